"""``--ckpt_path``: which file it means, what a resume continues with, where the logs go, and the help and output
around it. Every case runs ``lit_cs201.cli.lightning_cli.main`` in this process on a copy of one short Iris run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from helpers import CONFIGS, snapshot
from lit_cs201.cli.lightning_cli import main

IRIS = str(CONFIGS / "iris.yaml")
QUIET = "--trainer.enable_progress_bar=false"
RUN = Path("runs/iris/version_0")
LAST = str(RUN / "last.ckpt")  # "last" alone is the newest run's: the scheduled one
LR = "--model.init_args.optimizer.init_args.lr"
STEP_LR = '{"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2}}'


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A 2-epoch Iris run (Adam, lr 0.01) and one with a StepLR schedule, written once."""
    root = tmp_path_factory.mktemp("restore")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["fit", "--config", IRIS, "--trainer.max_epochs=2", QUIET]) == 0
        scheduled = ["--trainer.logger.init_args.name=scheduled", f"--model.init_args.lr_scheduler={STEP_LR}"]
        assert main(["fit", "--config", IRIS, "--trainer.max_epochs=2", *scheduled, QUIET]) == 0
    return root


@pytest.fixture
def work(template, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(template, folder)
    monkeypatch.chdir(folder)
    return folder


def last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def saved_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_a_resume_continues_from_the_latest_saved_config(work):
    """The printed ``fit --ckpt_path last`` works after a resume that raised max_epochs (config-1.yaml holds it);
    reloading the first config.yaml, Lightning refused: "current_epoch=4, but you have set max_epochs=2"."""
    assert main(["fit", "--ckpt_path", LAST, "--trainer.max_epochs=4", QUIET]) == 0
    assert main(["fit", "--ckpt_path", LAST, QUIET]) == 0
    assert saved_config(RUN / "config-2.yaml")["trainer"]["max_epochs"] == 4
    assert torch.load(RUN / "last.ckpt", weights_only=True)["epoch"] == 3
    assert not (RUN.parent / "version_1").exists()


def test_a_new_learning_rate_at_resume_takes_effect(work):
    assert main(["fit", "--ckpt_path", LAST, "--trainer.max_epochs=3", f"{LR}=0.05", QUIET]) == 0
    state = torch.load(RUN / "last.ckpt", weights_only=True)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == 0.05  # trained at it, not at the saved 0.01
    assert state["hyper_parameters"]["optimizer"]["init_args"]["lr"] == 0.05
    assert saved_config(RUN / "config-1.yaml")["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.05


@pytest.mark.parametrize(
    "change, expected",
    [
        ([f"{LR}=0.05"], ("schedule (StepLR(step_size=2", "new lr 0.05 cannot take effect")),
        (["--model.init_args.lr_scheduler.init_args.step_size=3"], ("continues the schedule", "step_size=3")),
    ],
    ids=["learning rate under a schedule", "another schedule"],
)
def test_a_setting_a_resume_cannot_apply_is_refused(work, capsys, change, expected):
    before = snapshot(work)
    last = "runs/scheduled/version_0/last.ckpt"
    assert main(["fit", "--ckpt_path", last, "--trainer.max_epochs=4", *change, QUIET]) == 2
    line = last_line(capsys)
    assert line.startswith(f"lit-cs201: error: --ckpt_path {last}") and all(e in line for e in expected), line
    assert snapshot(work) == before


def test_ckpt_path_in_a_config_goes_through_the_same_checks(work, capsys):
    (work / "missing.yaml").write_text("ckpt_path: nowhere.ckpt\n")
    before = snapshot(work)
    assert main(["fit", "--config", IRIS, "--config", "missing.yaml", QUIET]) == 2
    assert last_line(capsys) == "lit-cs201: error: --ckpt_path nowhere.ckpt: no such file."
    assert snapshot(work) == before

    (work / "resume.yaml").write_text("ckpt_path: last\ntrainer:\n  max_epochs: 3\n")
    assert main(["fit", "--config", IRIS, "--config", "resume.yaml", QUIET]) == 0
    assert torch.load(RUN / "last.ckpt", weights_only=True)["epoch"] == 2  # continued the run, in its folder
    assert not (RUN.parent / "version_1").exists()


def test_a_saved_config_starts_a_new_run_rather_than_changing_the_old_one(work):
    assert main(["fit", "--ckpt_path", LAST, "--trainer.max_epochs=3", QUIET]) == 0
    saved = saved_config(RUN / "config-1.yaml")
    assert saved["ckpt_path"] is None and saved["trainer"]["logger"]["init_args"]["version"] is None
    before = snapshot(work / RUN)
    assert main(["fit", "--config", str(RUN / "config-1.yaml"), "--trainer.max_epochs=1", QUIET]) == 0
    assert (RUN.parent / "version_1" / "best.ckpt").is_file()
    assert snapshot(work / RUN) == before


def test_a_resume_keeps_to_the_run_folder_whatever_the_logs_flag_says(work):
    before = set(work.iterdir())
    args = ["fit", "--ckpt_path", LAST, "--trainer.logger.init_args.save_dir=elsewhere"]
    assert main([*args, "--trainer.max_epochs=3", QUIET]) == 0
    assert set(work.iterdir()) == before and (RUN / "config-1.yaml").is_file()
    # best/last found under the runs folder a flag names: the evaluation logs beside the checkpoint found there.
    assert main(["test", "--ckpt_path", "best", "--trainer.logger.init_args.save_dir=runs", QUIET]) == 0
    assert list(Path("runs").glob("*/version_0/test/version_0")) and not Path("runs/test").exists()


@pytest.mark.parametrize("given", ["flag", "config"])
def test_best_is_found_under_the_runs_folder_however_it_is_spelled(work, capsys, given):
    """``--trainer.logger.save_dir`` (without ``init_args``) is a spelling jsonargparse accepts, on the command line
    and in a config: ``best`` is looked for in the folder it names, and the test logs beside the checkpoint there."""
    shutil.move("runs", "elsewhere")
    if given == "flag":
        where = ["--trainer.logger.save_dir", "elsewhere"]
    else:
        (work / "logs.yaml").write_text("trainer:\n  logger:\n    save_dir: elsewhere\n")
        where = ["--config", "logs.yaml"]
    assert main(["test", "--ckpt_path", "best", *where, QUIET]) == 0
    assert "using elsewhere/scheduled/version_0/best.ckpt (the newest of 2)" in capsys.readouterr().err
    assert Path("elsewhere/scheduled/version_0/test/version_0").is_dir() and not Path("runs").exists()


def test_a_resume_without_the_runs_config_is_refused_unless_one_is_given(work, capsys):
    (RUN / "config.yaml").unlink()
    before = snapshot(work)
    assert main(["fit", "--ckpt_path", LAST, QUIET]) == 2
    line = last_line(capsys)
    assert "holds no config.yaml" in line and "--config FILE" in line
    assert snapshot(work) == before
    assert main(["fit", "--ckpt_path", LAST, "--config", IRIS, "--trainer.max_epochs=3", QUIET]) == 0
    assert torch.load(RUN / "last.ckpt", weights_only=True)["epoch"] == 2


def test_best_ckpt_means_the_newest_runs_and_says_which(work, capsys):
    assert main(["test", "--ckpt_path", "best.ckpt", QUIET]) == 0
    out = capsys.readouterr()
    assert "--ckpt_path best.ckpt: using runs/scheduled/version_0/best.ckpt (the newest of 2)" in out.err
    assert out.out.strip().splitlines()[-1] == "Logs and results of this test: runs/scheduled/version_0/test/version_0"


def test_an_experiment_named_like_a_glob_pattern_is_a_name(work, capsys):
    shutil.copytree("runs/iris", "runs/exp1")  # what the pattern exp[1] matches
    shutil.copytree("runs/iris", "runs/exp[1]")
    (work / "exp.yaml").write_text("trainer:\n  logger:\n    init_args:\n      name: exp[1]\n")
    assert main(["test", "--config", "exp.yaml", "--ckpt_path", "last", QUIET]) == 0
    assert "using runs/exp[1]/version_0/last.ckpt (the newest of 1)" in capsys.readouterr().err


def test_output_is_quiet_unless_asked(work, capsys, caplog):
    """No seed or device lines (they came before any error, and every evaluation drew a new seed); the model
    summary counts the network's FLOPs."""
    caplog.set_level(logging.INFO)
    assert main(["test", "--ckpt_path", "best", QUIET]) == 0
    assert "Seed set to" not in caplog.text and "GPU available" not in caplog.text
    assert main(["test", "--ckpt_path", "best", "--log_level=info", QUIET]) == 0
    assert "Seed set to 0" in caplog.text and "GPU available" in caplog.text  # evaluations use a fixed seed
    capsys.readouterr()
    assert main(["fit", "--config", IRIS, "--trainer.max_epochs=1", QUIET]) == 0
    assert "Total FLOPs: 140" in capsys.readouterr().out  # 2 * (4*10 + 10*3) multiply-adds: the 4-10-3 MLP


def test_help_shows_the_product(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "Score a checkpoint on its test split" in top and "never run on your" not in top
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    fit = capsys.readouterr().out
    for name in ("IrisDataModule", "MNISTDataModule", "CIFAR10DataModule", "TinyImageNetDataModule", "Classifier"):
        assert f"  {name}: " in fit, name
    assert "best / last" in fit and "hpc" not in fit
    with pytest.raises(SystemExit):
        main(["fit", "--data.help", "MNISTDataModule"])
    assert "--data.data_dir" in capsys.readouterr().out


def test_short_class_names_and_a_mistyped_flag(work, capsys):
    assert main(["fit", "--data", "IrisDataModule", "--trainer.max_epochs=1", QUIET]) == 0
    assert main(["fit", "--config", IRIS, "--trainer.max_epoch=3"]) == 2
    assert last_line(capsys).endswith("unrecognized option --trainer.max_epoch; did you mean --trainer.max_epochs?")


def test_print_config_shows_the_config_the_command_would_run(work, capsys):
    """With --ckpt_path, the printed config holds the checkpoint's settings and what the command settles (the
    logger beside the checkpoint), not the parser's bare defaults."""
    with pytest.raises(SystemExit) as stop:
        main(["test", "--ckpt_path", str(RUN / "best.ckpt"), "--print_config=skip_null"])
    assert stop.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"] == "lit_cs201.data.IrisDataModule"
    assert printed["model"]["init_args"]["hidden_sizes"] == [10]
    assert printed["trainer"]["logger"]["init_args"]["save_dir"] == str(RUN)
    assert not list(RUN.glob("test*"))  # printed, not run


def test_a_fit_from_a_checkpoint_outside_a_run_never_writes_where_it_lies(work):
    """A checkpoint someone handed over, in a folder of its own: the fit that starts from it is a new run in the
    runs folder; the checkpoint and its folder are left as they were."""
    loose = work / "handed_over"
    loose.mkdir()
    shutil.copy(RUN / "last.ckpt", loose / "model.ckpt")
    before = snapshot(loose)
    args = ["fit", "--ckpt_path", str(loose / "model.ckpt"), "--config", IRIS, "--trainer.max_epochs=3", QUIET]
    assert main(args) == 0
    assert snapshot(loose) == before
    assert torch.load(RUN.parent / "version_1" / "last.ckpt", weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("spelling", ["./runs", "runs/", "other"])
def test_an_evaluation_logs_beside_a_checkpoint_under_the_runs_folder_however_spelled(work, spelling):
    if spelling == "other":
        shutil.move("runs", "other")
    root = Path(spelling)
    args = ["test", "--ckpt_path", str(root / RUN.relative_to("runs") / "best.ckpt"), QUIET]
    assert main([*args, "--trainer.logger.save_dir", spelling]) == 0
    assert (root / RUN.relative_to("runs") / "test" / "version_0" / "summary.json").is_file()
    assert not (root / "test").exists()


@pytest.mark.parametrize("given", ["flag", "config"])
def test_an_option_of_a_class_only_the_checkpoint_names_is_taken_from_a_flag_or_a_config(work, given):
    # The scheduled run's StepLR: its step_size is an option jsonargparse knows only once the checkpoint names it.
    option = {"model": {"init_args": {"lr_scheduler": {"init_args": {"step_size": 5}}}}}
    if given == "flag":
        override = ["--model.init_args.lr_scheduler.init_args.step_size", "5"]
    else:
        (work / "over.yaml").write_text(yaml.safe_dump(option))
        override = ["--config", "over.yaml"]
    scheduled = "runs/scheduled/version_0"
    assert main(["test", "--ckpt_path", "last", "--trainer.logger.init_args.name=scheduled", *override, QUIET]) == 0
    used = saved_config(Path(scheduled, "test", "version_0", "config.yaml"))
    assert used["model"]["init_args"]["lr_scheduler"]["init_args"]["step_size"] == 5
