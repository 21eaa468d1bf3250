"""Every bad input the CLI knows of: exit status 2, one actionable line, and no file written or changed."""

from __future__ import annotations

import pytest
import torch

from helpers import CONFIGS, snapshot
from lit_cs201.cli import main

IRIS = str(CONFIGS / "iris.yaml")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with an earlier run in it, which no bad command may touch."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "iris" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed_everything: 1\n")
    torch.save({"not": "a lightning checkpoint"}, run / "weights.ckpt")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint at all")
    (tmp_path / "bad_key.yaml").write_text(open(IRIS).read().replace("max_epochs:", "max_epoch:"))
    (tmp_path / "bad_model.yaml").write_text(open(IRIS).read().replace("models.Classifier", "models.Nope"))
    (tmp_path / "bad_data.yaml").write_text(open(IRIS).read().replace("IrisDataModule", "IrisData"))
    return tmp_path


CASES = {
    "unknown config key": (["fit", "--config", "bad_key.yaml"], "max_epoch"),
    "unknown flag": (["fit", "--config", IRIS, "--trainer.max_epoch", "3"], "max_epoch"),
    "missing config file": (["fit", "--config", "missing.yaml"], "missing.yaml"),
    "unknown model class": (["fit", "--config", "bad_model.yaml"], "lit_cs201.models.Classifier"),
    "unknown datamodule class": (["fit", "--config", "bad_data.yaml"], "lit_cs201.data.IrisDataModule"),
    "wrong type": (["fit", "--config", IRIS, "--trainer.max_epochs", "many"], "trainer.max_epochs"),
    "bad choice": (["fit", "--config", IRIS, "--model.init_args.net", "resnet9"], "resnet9"),
    "bad val_size": (["fit", "--config", IRIS, "--data.init_args.val_size", "2.5"], "val_size"),
    "val_size too large": (["fit", "--config", IRIS, "--data.init_args.val_size", "500"], "val_size"),
    "missing checkpoint": (["test", "--ckpt_path", "nope.ckpt"], "nope.ckpt: no such file"),
    "not a checkpoint": (["test", "--ckpt_path", "notes.ckpt"], "not a readable checkpoint"),
    "not a lightning checkpoint": (["test", "--ckpt_path", "runs/iris/version_0/weights.ckpt"], "state_dict"),
    "best with no runs": (["test", "--ckpt_path", "best"], "no best.ckpt"),
    "last with no runs": (["fit", "--config", IRIS, "--ckpt_path", "last"], "no last.ckpt under runs/iris"),
    "test without checkpoint": (["test", "--config", IRIS], "needs --ckpt_path"),
}


@pytest.mark.parametrize("args, expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_with_one_clear_line(workdir, capsys, args, expected):
    before = snapshot(workdir)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lit-cs201: error: ")
    assert expected in err[-1]
    assert snapshot(workdir) == before
