"""Several processes (DDP, on CPU with gloo) through the real command: one run folder, and the same scores and
predictions as a single process, because evaluation sees each sample exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import CONFIGS, run_cli, scalars
from lit_cs201.data import IrisDataModule

DDP = ("--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu")
SINGLE = ("--trainer.devices=1", "--trainer.accelerator=cpu")
TEST_SIZE = 0.3  # 45 test and 21 validation flowers: two processes get shards of unequal length
EPOCHS = 3  # an under-trained model scores below 1.0, so a sample counted twice would change its scores
TIMEOUT = 300  # a process left waiting for a collective would otherwise hang the suite


def test_the_splits_do_not_divide_evenly():
    data = IrisDataModule(test_size=TEST_SIZE)
    data.setup("fit")
    assert len(data.test_set) % 2 == 1 and len(data.val_set) % 2 == 1


@pytest.mark.parametrize("world_size", [2, 4])
def test_evaluation_loaders_split_without_repeating(world_size):
    data = IrisDataModule(test_size=TEST_SIZE)
    data.setup("fit")
    for loader in ("val_dataloader", "test_dataloader", "predict_dataloader"):
        shards = []
        for rank in range(world_size):
            data.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)
            shards.append(list(getattr(data, loader)().sampler))
        size = len(getattr(data, loader)().dataset)
        assert sorted(i for shard in shards for i in shard) == list(range(size)), loader  # each sample once
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One DDP fit, shared by the tests that evaluate it."""
    work = tmp_path_factory.mktemp("ddp")
    args = ["--config", str(CONFIGS / "iris.yaml"), f"--data.init_args.test_size={TEST_SIZE}"]
    result = run_cli("fit", *args, *DDP, f"--trainer.max_epochs={EPOCHS}", cwd=work, timeout=TIMEOUT, process=True)
    return work / "runs" / "iris" / "version_0", result


def evaluate(subcommand: str, run: Path) -> tuple[Path, Path]:
    """Run ``subcommand`` on the run's best checkpoint with DDP and in one process, side by side (most of each run
    is starting Python); return the folders they wrote to."""
    parent = run / subcommand
    before = set(parent.iterdir()) if parent.is_dir() else set()
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(
                run_cli,
                *[subcommand, "--ckpt_path", str(run / "best.ckpt"), *args, f"--trainer.logger.version={name}"],
                cwd=run.parents[2],
                timeout=TIMEOUT,
                process=True,
            )
            for name, args in (("ddp", DDP), ("single", SINGLE))
        ]
        for done in runs:
            done.result()  # re-raises a failed run's error
    assert set(parent.iterdir()) - before == {parent / "ddp", parent / "single"}  # nothing from the second process
    return parent / "ddp", parent / "single"


def evaluated_scores(subcommand: str, run: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The scores of `evaluate`'s two evaluations, each read from the event file it wrote into the folder of the run
    it evaluated (TensorBoard shows them in that run)."""
    before = set(run.glob("events.out.tfevents.*"))
    evaluate(subcommand, run)
    written = sorted(set(run.glob("events.out.tfevents.*")) - before)
    assert len(written) == 2  # one an evaluation, whatever its processes: rank zero alone writes events
    first, second = (scalars(path) for path in written)
    return first, second


@pytest.mark.slow
def test_fit_writes_one_run_like_a_single_process(trained):
    run, result = trained
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # no folder of the second process
    assert sorted(p.name for p in run.glob("*.yaml")) == ["config.yaml", "hparams.yaml"]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert len(scalars(run)["val/acc"]) == EPOCHS  # one value per epoch, not one per process
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(run / name, weights_only=True)
        assert checkpoint["datamodule_hyper_parameters"]["test_size"] == TEST_SIZE
    assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1
    assert result.stdout.count("Best checkpoint:") == 1


@pytest.mark.slow
def test_test_scores_equal_a_single_process(trained):
    one, other = evaluated_scores("test", trained[0])  # the DDP one and the single process's
    per_class = [f"test/acc/{name}" for name in IrisDataModule.class_names]
    assert [one[tag] for tag in ["test/acc", *per_class]] == [other[tag] for tag in ["test/acc", *per_class]]
    assert one["test/acc"][-1] < 1.0  # else a repeated sample could not show
    assert one["test/loss"] == pytest.approx(other["test/loss"], rel=1e-5)  # sums in another order


@pytest.mark.slow
def test_validate_scores_equal_a_single_process(trained):
    run, _ = trained
    # A validate is a TensorBoard run of its own (its val/ points would double the fit's curves).
    ddp, single = (scalars(folder) for folder in evaluate("validate", run))
    assert ddp["val/acc"] == single["val/acc"]
    assert ddp["val/loss"] == pytest.approx(single["val/loss"], rel=1e-5)
    # The DDP fit's own validation scored best.ckpt the same.
    assert max(scalars(run)["val/acc"]) == single["val/acc"][-1]


@pytest.mark.slow
def test_predict_writes_the_single_process_csv(trained):
    ddp, single = ((folder / "predictions.csv").read_text() for folder in evaluate("predict", trained[0]))
    assert ddp == single
    assert [line.split(",")[0] for line in ddp.splitlines()[1:]] == [str(i) for i in range(45)]
