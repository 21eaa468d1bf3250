"""Runs are repeatable: a run's config.yaml holds the seed it used, given or not, and two runs with the same seed and
``deterministic: true`` on the CPU produce identical metrics and weights."""

from __future__ import annotations

import torch
import yaml

from helpers import CONFIGS, assert_same, curves_by_step, run_cli


def test_a_run_without_a_seed_records_one_that_repeats_it(tmp_path):
    config = yaml.safe_load((CONFIGS / "iris.yaml").read_text())
    del config["seed_everything"]
    config["trainer"].update(max_epochs=4, deterministic=True)
    (tmp_path / "unseeded.yaml").write_text(yaml.safe_dump(config))

    runs = tmp_path / "runs" / "iris"
    for _ in range(2):  # no seed given: each run draws its own
        run_cli("fit", "--config", "unseeded.yaml", cwd=tmp_path)
    seeds = [yaml.safe_load((runs / f"version_{i}" / "config.yaml").read_text())["seed_everything"] for i in (0, 1)]
    assert all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds)
    assert seeds[0] != seeds[1]

    # The recorded config alone repeats the first run exactly.
    run_cli("fit", "--config", str(runs / "version_0" / "config.yaml"), cwd=tmp_path)
    assert yaml.safe_load((runs / "version_2" / "config.yaml").read_text())["seed_everything"] == seeds[0]
    curves = [curves_by_step(runs / f"version_{i}") for i in (0, 1, 2)]
    assert curves[2] == curves[0]
    assert curves[1]["val/loss"] != curves[0]["val/loss"]  # another seed is another run
    weights = [torch.load(runs / f"version_{i}" / "last.ckpt", weights_only=True)["state_dict"] for i in (0, 2)]
    assert_same(weights[0], weights[1], "state_dict")
