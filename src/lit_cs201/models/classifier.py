"""The one LightningModule for every classification task: network, loss, metrics, optimizer and schedule."""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lit_cs201 import viz
from lit_cs201.errors import NonFiniteLossError, UserError, check_range, printable
from lit_cs201.loggers import figure_step
from lit_cs201.models.nets import build_net

CLASS_NAMES_KEY = "class_names"  # in the checkpoint
#: The most values one input may have: an example batch of it is built with the model.
MAX_INPUT = 3 * 4096 * 4096
#: The most classes: the test's confusion matrix holds a count for every pair (800 MB of them at this number).
MAX_CLASSES = 10_000

Batch = tuple[Tensor, Tensor] | tuple[Tensor] | list[Tensor]


class Classifier(LightningModule):
    """Cross-entropy classifier with accuracy metrics per stage.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_best``, ``test/loss``, ``test/acc``,
    ``test/acc_top5`` (more than five classes) and ``test/acc/<class name>``.

    Args:
        num_classes: Number of classes; linked from the datamodule by the CLI.
        input_shape: Shape of one input sample without the batch dimension, e.g. ``[4]`` or ``[3, 32, 32]``;
            linked from the datamodule by the CLI.
        net: Network: ``mlp``, ``mnist_cnn`` (a small plain CNN for 28x28 digits), ``resnet9`` (Page's fast CIFAR-10
            ResNet-9), or any torchvision classification model (``resnet18``, ``mobilenet_v3_small``,
            ``efficientnet_b0``, ``convnext_tiny``, ...: ``torchvision.models.list_models()``), with its head sized to
            the classes and its first convolution to the input's channels.
        hidden_sizes: Widths of the hidden layers of ``mlp``.
        stem: ResNet stem: ``imagenet`` (7x7/2 conv + max-pool) or ``cifar`` (3x3/1 conv, no max-pool).
        pretrained: Weights to start from (all but the head): a torchvision weight name of the net (``DEFAULT``,
            ``IMAGENET1K_V2``) or a ``.pth`` file.
        label_smoothing: Label smoothing of the training loss (evaluation losses use none).
        optimizer: Optimizer, e.g. ``{class_path: torch.optim.SGD, init_args: {lr: 0.01, momentum: 0.9}}``.
        lr_scheduler: Learning-rate schedule, or ``null`` for a constant rate. A ``OneCycleLR`` without
            ``total_steps`` is sized from the trainer's total number of optimizer steps and stepped every batch.
        lr_scheduler_interval: Step the schedule every ``epoch`` or every optimizer ``step``.
        channels_last: Use the channels-last memory format (faster convolutions on recent GPUs).
        compile: Compile the network with ``torch.compile`` (the checkpoint keys stay the same).
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: list[int],
        net: str = "mlp",
        hidden_sizes: list[int] = [10],  # noqa: B006  (read-only; a list so the CLI shows it as one)
        stem: Literal["imagenet", "cifar"] = "imagenet",
        pretrained: str | None = None,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_range("label_smoothing", label_smoothing, 0, below=1, hint="0 for none, 0.1 is usual")
        check_range("num_classes", num_classes, 2, MAX_CLASSES)
        if not (input_shape and all(size >= 1 for size in input_shape) and math.prod(input_shape) <= MAX_INPUT):
            raise UserError(
                f"input_shape must be sizes of at least 1, at most {MAX_INPUT:,} values in all (3x4096x4096), got "
                f"{list(input_shape)}"
            )
        self.net = build_net(net, num_classes, input_shape, hidden_sizes=hidden_sizes, stem=stem, pretrained=pretrained)
        self.example_input_array = torch.zeros(1, *input_shape)  # for the FLOPs in Lightning's model summary
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if compile:
            # Module.compile() compiles forward in place: unlike torch.compile(module), the state_dict keys
            # (and so the checkpoints) stay those of the plain network.
            self.net.compile()
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.train_loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

        # One metric object per stage: torchmetrics keeps state, and sharing it would mix stages. The mean losses
        # keep NaN (torchmetrics would drop it with a warning): a diverged model must show, not average away. They
        # take per-sample losses: with nan_strategy "disable", torchmetrics 1.9 ignores a `weight`.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in the checkpoint, so a resumed run's curve carries on
        self.test_loss = MeanMetric(nan_strategy="disable")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_per_class = MulticlassAccuracy(num_classes, average=None)
        self.test_acc_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro") if num_classes > 5 else None
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self._grid: list[Tensor] = []  # images, targets, predictions of the test images the grid shows
        self._grid_step = 1  # the grid shows every n-th test image...
        self._grid_seen = 0  # ...counting the test images seen so far
        self._run_steps: int | None = None  # optimizer steps of the whole run, when a one-cycle schedule uses them
        self.saved_class_names: list[str] | None = None  # from a checkpoint
        self._resumed_optimizer: Any = None  # the optimizer settings of the checkpoint a fit continues
        self._lr: float | None = None  # a rate set through `lr`, over the configured one
        # Set while a learning-rate finder sweeps the rate (lit_cs201.lr_find): a loss that is no longer finite then
        # ends the sweep, whose curve has found where the rate is too high, instead of stopping the run.
        self.sweeping_lr = False

    @property
    def class_names(self) -> list[str]:
        """Readable class names: those the checkpoint was trained with, else the attached datamodule's, else the
        class indices."""
        if self.saved_class_names:
            return list(self.saved_class_names)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(datamodule, "class_names", None)
        return list(names) if names else [str(i) for i in range(self.hparams.num_classes)]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return self.net(x)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.train_loss_fn(logits, y)
        # The mean over all processes: the curve shows the whole step, and a non-finite loss on any process stops
        # every process at the same step (one that stopped alone would leave the others waiting for it).
        step_loss = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")
        if not torch.isfinite(step_loss):
            self._diverged(
                f"train/loss is {float(step_loss)} at step {self.global_step} (epoch {self.current_epoch + 1}, batch "
                f"{batch_idx + 1}); a learning rate that is too high is the usual cause"
            )
            return None  # no step on a non-finite loss; a sweep records it as a gap in its curve
        self.train_acc(logits, y)
        self.log("train/loss", step_loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_loss(nn.functional.cross_entropy(logits, y, reduction="none"))
        self.val_acc(logits, y)
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        # During fit this runs before the checkpoint callbacks: a model whose outputs are no longer finite (its
        # accuracy is then that of always answering class 0, which can look like a best score) is never saved.
        val_loss = self.val_loss.compute()
        if self.trainer.state.fn == TrainerFn.FITTING and not torch.isfinite(val_loss):
            if self.trainer.sanity_checking:
                when = "in the sanity check, before any training"
            else:
                when = f"after epoch {self.current_epoch + 1} (step {self.global_step})"  # counted from 1
            self._diverged(f"val/loss is {float(val_loss)} {when}")
            return
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            # A weight can turn NaN where it never meets the data (the outer taps of a 3x3 kernel on a 1x1 feature
            # map, which oneDNN skips): the outputs stay finite, and the checkpoint saved next could not be loaded.
            bad = next((name for name, p in self.named_parameters() if not torch.isfinite(p).all()), None)
            if bad is not None:
                self._diverged(
                    f"the weights {bad} are no longer finite numbers after epoch {self.current_epoch + 1} "
                    f"(step {self.global_step})"
                )
        if self.trainer.sanity_checking:
            return  # a sanity check sees two batches of an untrained model: not a score to keep
        self.val_acc_best(self.val_acc.compute())
        # Computed from metrics already combined across processes: the same everywhere, sync_dist only says so.
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def _diverged(self, what: str) -> None:
        """A learning-rate sweep ends here (its curve has found where the rate is too high); any other run stops
        with `NonFiniteLossError`, saying ``what`` is no longer finite."""
        if self.sweeping_lr:
            self.trainer.should_stop = True
            return
        raise NonFiniteLossError(f"training stopped: {what}{self._bf16_cpu_hint()}")

    def _bf16_cpu_hint(self) -> str:
        """bfloat16 on a CPU with AMX: oneDNN's kernels there give NaN now and then where a feature map has shrunk to a
        pixel or two (a ResNet on images of a few dozen pixels), which float32 never does."""
        if self.device.type != "cpu" or not str(self.trainer.precision).startswith("bf16"):
            return ""
        return "; on a CPU in bf16, feature maps of a pixel or two can also give NaN: --trainer.precision 32-true tells"

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_loss(nn.functional.cross_entropy(logits, y, reduction="none"))
        self.test_acc(logits, y)
        self.test_acc_per_class.update(logits, y)
        self.test_confusion.update(logits, y)
        if x.dim() == 4:
            self._keep_for_grid(x, y, logits.argmax(dim=-1), batch_idx)
        self.log("test/loss", self.test_loss)
        self.log("test/acc", self.test_acc)
        if self.test_acc_top5 is not None:
            self.test_acc_top5(logits, y)
            self.log("test/acc_top5", self.test_acc_top5)

    def _keep_for_grid(self, x: Tensor, y: Tensor, predicted: Tensor, batch_idx: int) -> None:
        """Keep every n-th test image, n such that the grid spans the test set: an image folder lists its test images
        class by class, and the first ones would all be of the first class."""
        if batch_idx == 0:
            batches = self.trainer.num_test_batches[0]  # this process's, after limit_test_batches
            # At least this many images (the last batch may be short), so that the grid is always filled.
            images = (batches - 1) * len(x) + 1 if batches != float("inf") else viz.GRID_SIZE
            self._grid_step = max(1, int(images) // viz.GRID_SIZE)
        positions = torch.arange(self._grid_seen, self._grid_seen + len(x), device=x.device)
        self._grid_seen += len(x)
        kept = positions % self._grid_step == 0
        new = [t[kept].detach().cpu() for t in (x, y, predicted)]
        self._grid = new if not self._grid else [torch.cat([a, b]) for a, b in zip(self._grid, new, strict=True)]
        self._grid = [t[: viz.GRID_SIZE] for t in self._grid]

    def on_test_epoch_start(self) -> None:
        self._grid, self._grid_seen = [], 0

    def on_test_epoch_end(self) -> None:
        per_class = self.test_acc_per_class.compute()
        names = self.class_names
        for name, acc in zip(names, per_class, strict=True):
            self.log(f"test/acc/{name}", acc, sync_dist=True)
        confusion = self.test_confusion.compute()  # synchronised across processes
        self._report(per_class, confusion, names)
        self.test_acc_per_class.reset()
        self.test_confusion.reset()

    @rank_zero_only
    def _report(self, per_class: Tensor, confusion: Tensor, names: list[str]) -> None:
        """Print the per-class table; log the confusion matrix and the prediction grid to TensorBoard."""
        support = confusion.sum(dim=1).tolist()
        print("\nPer-class test accuracy, worst class first\n" + viz.accuracy_table(per_class.tolist(), names, support))
        tensorboard = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if tensorboard is None:
            return
        figures = {"test/confusion_matrix": viz.confusion_figure(confusion, names)}
        if self._grid:
            figures["test/predictions"] = viz.prediction_grid(*self._grid, class_names=names)
        for tag, figure in figures.items():
            tensorboard.experiment.add_figure(tag, figure, figure_step(tensorboard, self.global_step), close=True)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor | None]:
        x = batch[0]
        target = batch[1] if len(batch) > 1 else None
        return {"probs": self(x).softmax(dim=-1), "target": target}

    @property
    def optimizer_name(self) -> str:
        """The optimizer's class path, as the config gives it (``torch.optim.SGD``)."""
        return self._class_path("optimizer")

    def _class_path(self, key: str) -> str:
        """The class path of ``optimizer`` or ``lr_scheduler``: the config's, else the class behind the callable."""
        given = self.hparams.get(key)
        if isinstance(given, dict) and "class_path" in given:
            return given["class_path"]
        value = getattr(self, key)
        # The class itself, a partial of it, or (rebuilt from a checkpoint) a partial of an instantiator and the class.
        candidates = (value, getattr(value, "func", None), *getattr(value, "args", ()))
        cls = next((c for c in candidates if isinstance(c, type)), None)
        return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else repr(value)

    def check_optimization(self) -> None:
        """Build the optimizer and the schedule once, on a throw-away optimizer, before a `fit`: torch checks their
        settings (a negative learning rate, a pct_start above 1) only when they are built, in the middle of `fit`,
        after the run folder exists. Only for a `fit`: an evaluation, a model rebuilt from a checkpoint, builds
        neither."""
        key = "optimizer"
        try:
            optimizer = self.optimizer(self.parameters())
            if callable(self.lr_scheduler):
                key = "lr_scheduler"
                # Any length will do for a one-cycle schedule here: `configure_optimizers` sizes the real one.
                self.lr_scheduler(optimizer, **({"total_steps": 1000} if self.cycle_spans_run else {}))
        except ValueError as err:
            raise UserError(f"{key} {self._class_path(key)}: {err}") from None
        except ZeroDivisionError:
            pass  # the stand-in length happened to give a one-step phase; `configure_optimizers` checks the real one

    @property
    def lr(self) -> float:
        """The learning rate training runs at: the optimizer's ``lr``, or the peak of a schedule that sets the rate
        itself (``max_lr`` of ``OneCycleLR`` or ``CyclicLR``). Setting it (as Lightning's learning-rate finder does)
        replaces the configured rate in the optimizer and schedule that `configure_optimizers` builds next."""
        if self._lr is not None:
            return self._lr
        if self.schedule_sets_lr:
            return self.lr_scheduler.keywords["max_lr"]
        return self.optimizer([nn.Parameter(torch.zeros(1))]).defaults["lr"]  # the configured or the class's default

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = float(value)

    @property
    def schedule_sets_lr(self) -> bool:
        """Whether the schedule sets the rate from its own ``max_lr`` (``OneCycleLR``, ``CyclicLR``), so that the
        optimizer's ``lr`` is not used."""
        return "max_lr" in getattr(self.lr_scheduler, "keywords", {})

    @property
    def cycle_spans_run(self) -> bool:
        """Whether the schedule is one cycle over the whole run (a ``OneCycleLR`` given neither ``total_steps`` nor
        ``epochs``), sized from the trainer's total number of optimizer steps."""
        settings = getattr(self.lr_scheduler, "keywords", {})
        return "total_steps" in settings and settings["total_steps"] is None and settings.get("epochs") is None

    def configure_optimizers(self) -> Any:
        optimizer_lr, schedule_lr = {}, {}
        if self._lr is not None and self.schedule_sets_lr:  # a rate set through `lr`
            schedule_lr = {"max_lr": self._lr}
        elif self._lr is not None:
            optimizer_lr = {"lr": self._lr}
        optimizer = self.optimizer(self.parameters(), **optimizer_lr)
        if self.lr_scheduler is None:
            return optimizer
        interval = self.hparams.lr_scheduler_interval
        schedule = functools.partial(self.lr_scheduler, **schedule_lr)
        if self.cycle_spans_run:
            # OneCycleLR and the like: one cycle over the whole run, however long the config makes it.
            self._run_steps = int(self.trainer.estimated_stepping_batches)
            try:
                scheduler = schedule(optimizer, total_steps=self._run_steps)
            except ZeroDivisionError:  # OneCycleLR interpolates over each phase, and a phase of one step has none
                pct_start = getattr(self.lr_scheduler, "keywords", {}).get("pct_start", 0.3)
                raise UserError(
                    f"a one-cycle schedule over this run's {self._run_steps} optimizer steps with pct_start "
                    f"{pct_start} has a warm-up of exactly one step, which OneCycleLR cannot interpolate; "
                    "train for more steps (max_epochs, limit_train_batches) or change pct_start"
                ) from None
            interval = "step"
        else:
            scheduler = schedule(optimizer)
        config = {"scheduler": scheduler, "interval": interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_train_start(self) -> None:
        self._apply_new_optimizer_settings()
        # After a resume, the schedule is the checkpoint's: a cycle sized for the run as it was first started.
        cycle = getattr(self.lr_schedulers(), "total_steps", None) if self._run_steps else None
        if cycle is not None and cycle != self._run_steps:
            raise UserError(
                f"the run being resumed has a one-cycle schedule of {cycle} optimizer steps, but this run's settings "
                f"(max_epochs {self.trainer.max_epochs}) make {self._run_steps}; resume with the settings it was "
                "started with"
            )

    def _apply_new_optimizer_settings(self) -> None:
        """After a resume, set what the config changes of the optimizer's settings (a new ``lr``, ``momentum``,
        ``weight_decay``): Lightning has just loaded the checkpoint's, which would otherwise train on as before. (The
        CLI refuses a new ``lr`` under a schedule, which sets the rate from the run's start.)"""
        saved, configured = (init_args(value) for value in (self._resumed_optimizer, self.hparams.get("optimizer")))
        changed = {key: value for key, value in configured.items() if key in saved and saved[key] != value}
        for optimizer in self.trainer.optimizers if changed else []:
            for group in optimizer.param_groups:
                for key, value in changed.items():
                    if key in group:
                        group[key] = tuple(value) if isinstance(group[key], tuple) else value

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_optimizer = checkpoint.get("hyper_parameters", {}).get("optimizer")
        # Checkpoints written before the best validation score was kept in them.
        checkpoint["state_dict"].setdefault("val_acc_best.max_value", self.val_acc_best.max_value)
        names = checkpoint.get(CLASS_NAMES_KEY)
        if isinstance(names, list) and len(names) == self.hparams.num_classes:
            # Data: shown escaped wherever they are printed or logged (TensorBoard tags, Lightning's tables).
            self.saved_class_names = [printable(n) for n in names]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CLASS_NAMES_KEY] = self.class_names  # a checkpoint predicts with its names, data or not
        # From a config, the CLI stores the optimizer and schedule as plain dicts. Callables passed from Python are
        # left out: checkpoints must load with torch.load(weights_only=True).
        hparams = checkpoint.get("hyper_parameters", {})
        for key in ("optimizer", "lr_scheduler"):
            if callable(hparams.get(key)):
                del hparams[key]


def init_args(value: Any) -> dict[str, Any]:
    """The settings of a ``{class_path, init_args}`` hyper-parameter; none for a callable passed from Python."""
    return dict(value.get("init_args") or {}) if isinstance(value, dict) else {}
