"""What TensorBoard's HPARAMS tab shows: one row per fit, with the settings a student compares and the run's scores,
its best ``val/acc`` and the newest test of its checkpoints.

TensorBoard builds the table from three kinds of record in the event files (its hparams plugin): an *experiment*,
the columns of the whole table, taken from whichever run it reads first; a *session start* per run, that run's
values; and, for each metric column, the last value of the scalar curve of that name in the run's own folder. So
every run writes the same experiment (`COLUMNS`, `METRICS`), whatever its own settings: one run's settings never
decide the columns of another's row (a ResNet row under an MLP's ``hidden_sizes``, a test row without
``val/acc_best``). A test or predict of a run's checkpoint writes its event file into that run's folder, so the row
of the run shows the newest test's scores, and TensorBoard's run list has one run per fit rather than one per
evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams.api_pb2 import (
    DATA_TYPE_FLOAT64,
    DATA_TYPE_STRING,
    STATUS_SUCCESS,
    Experiment,
    HParamInfo,
    MetricInfo,
    MetricName,
)
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo

from lit_cs201.errors import is_count, printable
from lit_cs201.report.logger import TensorBoardLogger as RunLogger

#: The columns of the table and whether each holds a number. TensorBoard shows five columns at first, those marked as
#: differing between runs first: these are the first five here; the others are a tick away in its column list. A run
#: lists only the settings that apply to it (no ``hidden_sizes`` for a ResNet, no ``pretrained`` when it has none).
COLUMNS = {
    "dataset": False,
    "net": False,
    "lr": True,
    "batch_size": True,
    "epochs": True,
    "precision": False,
    "optimizer": False,
    "schedule": False,
    "hidden_sizes": False,
    "pretrained": False,
}
SHOWN = 5
#: The scores: a fit's best ``val/acc``, and the scores of the newest test of its checkpoints.
METRICS = ("val/acc_best", "test/acc", "test/acc_top5", "test/loss")


class TensorBoardHparams(Callback):
    """Show every fit in TensorBoard's HPARAMS tab with its settings and real scores, instead of Lightning's
    placeholder.

    Lightning logs the hyper-parameters at the start of every stage and, unless the logger was built with
    ``default_hp_metric=False`` (the CLI builds its logger so), a metric ``hp_metric`` fixed at -1 with them: a card
    in every run and a score that compares nothing. This callback writes the table's records (see the module): a
    fit's when it starts, so that an interrupted run shows its best so far.

    An evaluation (``validate``, ``test``, ``predict``) with this package's logger logs its scores and figures at
    the step of the evaluated checkpoint's validation (beside its ``val/acc``). When the checkpoint is in a run's
    folder and a test or predict logs beside it (``<run>/<subcommand>/version_N/``), its event file goes into the
    run's folder (its other files stay where they are; a validate stays a run of its own): the run's row shows the
    test's ``test/acc``, ``test/acc_top5`` (more than five classes) and ``test/loss``, and its charts the test's
    points and figures. A test logging elsewhere (``--trainer.logger.init_args.save_dir``) is a run and a row of its
    own.
    """

    def __init__(self) -> None:
        self._in_run = False  # the evaluation's events go into the folder of the run it evaluates

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._in_run = False
        for logger in tensorboards(trainer):
            if isinstance(logger, RunLogger):  # a stage of its own, not a previous evaluation's step and folder
                logger.evaluated_step = None
                logger.events_dir = None

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            return
        # Where the checkpoint's validation is on the curves: Lightning logs it at the step of the epoch's last batch,
        # one below the optimizer steps the checkpoint counts. A checkpoint is data: a count, or step 0.
        step = checkpoint.get("global_step")
        # Only rank zero writes events. A validate stays a run of its own: its val/ points, at the step of the fit's
        # own, would be second points on the fit's curves.
        joins = trainer.is_global_zero and trainer.state.fn != TrainerFn.VALIDATING
        run = tested_run(trainer) if joins else None
        for logger in trainer.loggers:
            if isinstance(logger, RunLogger):
                logger.evaluated_step = step - 1 if is_count(step) and step > 0 else 0
                if run is not None:  # nothing is logged before the checkpoint is loaded: all of it goes there
                    logger.events_dir = str(run)
                    self._in_run = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            _write_session(trainer, run_hparams(trainer))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and not self._in_run:
            _write_session(trainer, run_hparams(trainer))


def tested_run(trainer: Trainer) -> Path | None:
    """The run folder of the checkpoint an evaluation scores, when the evaluation logs beside it
    (``<run>/<subcommand>/version_N/``) and the folder is a run's, with TensorBoard events of its own; else None."""
    loggers = tensorboards(trainer)
    if not trainer.ckpt_path or not loggers:
        return None
    run = Path(trainer.ckpt_path).resolve().parent
    if Path(loggers[0].log_dir).resolve().parent.parent != run:
        return None
    return run if any(run.glob("events.out.tfevents.*")) else None


def tensorboards(trainer: Trainer) -> list[TensorBoardLogger]:
    """The trainer's TensorBoard loggers (Lightning's, and this package's, which is one)."""
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def _write_session(trainer: Trainer, hparams: Mapping[str, float | str]) -> None:
    """The experiment and the run's session, written to the run's own event file, as Lightning's
    `TensorBoardLogger.log_hyperparams` writes them (`SummaryWriter.add_hparams` would make a sub-run)."""
    infos = [
        HParamInfo(name=name, type=DATA_TYPE_FLOAT64 if number else DATA_TYPE_STRING, differs=i < SHOWN)
        for i, (name, number) in enumerate(COLUMNS.items())
    ]
    metrics = [MetricInfo(name=MetricName(tag=tag)) for tag in METRICS]
    start = SessionStartInfo()
    for name, value in hparams.items():
        if isinstance(value, str):
            start.hparams[name].string_value = value
        else:
            start.hparams[name].number_value = value
    records = {
        metadata.EXPERIMENT_TAG: HParamsPluginData(experiment=Experiment(hparam_infos=infos, metric_infos=metrics)),
        metadata.SESSION_START_INFO_TAG: HParamsPluginData(session_start_info=start),
        metadata.SESSION_END_INFO_TAG: HParamsPluginData(session_end_info=SessionEndInfo(status=STATUS_SUCCESS)),
    }
    for logger in tensorboards(trainer):
        writer = logger.experiment._get_file_writer()
        for tag, data in records.items():
            data.version = metadata.PLUGIN_DATA_VERSION
            content = metadata.create_summary_metadata(data)
            writer.add_summary(Summary(value=[Summary.Value(tag=tag, metadata=content)]))


def run_hparams(trainer: Trainer) -> dict[str, float | str]:
    """The run's values of `COLUMNS`, those that apply to it: the data set (its class, or the folder's name), the
    net, the learning rate (the peak of a one-cycle schedule, the start of any other), the batch size, the epochs and
    precision of a fit, the optimizer and schedule classes, the hidden layers of an MLP and the weights it started
    from."""
    model = _hparams(trainer.lightning_module)
    data = _hparams(trainer.datamodule)
    values: dict[str, Any] = {"dataset": _dataset(trainer.datamodule, data), "net": model.get("net")}
    values["lr"], values["optimizer"], values["schedule"] = _optimization(trainer, model)
    values["batch_size"] = data.get("batch_size")
    if trainer.state.fn == TrainerFn.FITTING:
        values["epochs"], values["precision"] = trainer.max_epochs, str(trainer.precision)
    if values["net"] == "mlp":
        values["hidden_sizes"] = str(list(model.get("hidden_sizes") or []))
    if model.get("pretrained"):
        values["pretrained"] = str(model["pretrained"])
    return {
        name: value if isinstance(value, str) else float(value)
        for name, value in values.items()
        if isinstance(value, int | float | str) and not isinstance(value, bool)
    }


def _hparams(owner: Any) -> dict[str, Any]:
    return dict(getattr(owner, "hparams_initial", None) or {})


def _dataset(datamodule: Any, hparams: Mapping[str, Any]) -> str | None:
    if datamodule is None:
        return None
    name = type(datamodule).__name__.removesuffix("DataModule")
    if name == "ImageFolder" and hparams.get("data_dir"):
        return f"folder {printable(Path(str(hparams['data_dir'])).name)}"
    return name


def _optimization(trainer: Trainer, model: Mapping[str, Any]) -> tuple[float | None, str | None, str]:
    """The learning rate, the optimizer's class name and the schedule's (``none``): a fit's from its optimizer, an
    evaluation's from the settings it was trained with."""
    if trainer.optimizers:
        group = trainer.optimizers[0].param_groups[0]
        lr = group.get("max_lr", group.get("initial_lr", group["lr"]))
        schedules = trainer.lr_scheduler_configs
        schedule = type(schedules[0].scheduler).__name__ if schedules else "none"
        return float(lr), type(trainer.optimizers[0]).__name__, schedule
    optimizer, schedule = model.get("optimizer"), model.get("lr_scheduler")
    settings = {**_init_args(optimizer), **_init_args(schedule)}
    lr = settings.get("max_lr", settings.get("lr"))
    return lr if isinstance(lr, int | float) else None, _class_name(optimizer), _class_name(schedule) or "none"


def _init_args(value: Any) -> dict[str, Any]:
    args = value.get("init_args") if isinstance(value, Mapping) else None
    return dict(args) if isinstance(args, Mapping) else {}


def _class_name(value: Any) -> str | None:
    """The class name of a setting given as ``{class_path: ..., init_args: ...}`` or as a class."""
    path = value.get("class_path") if isinstance(value, Mapping) else getattr(value, "__qualname__", None)
    return str(path).rsplit(".", 1)[-1] if path else None
