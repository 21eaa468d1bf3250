"""What a checkpoint brings back: which file ``--ckpt_path`` means, the model and data it was trained with, the run
it belongs to, and whether the configured model and settings can continue from it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from lit_cs201.errors import UserError, printable
from lit_cs201.models.optimization import init_args
from lit_cs201.runs.checkpoint import Checkpoint
from lit_cs201.runs.folders import DEFAULT_RUNS_DIR
from lit_cs201.runs.records import read_run

# ``--ckpt_path best`` (or ``best.ckpt`` where no such file is) means the newest run's best.ckpt.
ALIASES = {"best": "best.ckpt", "last": "last.ckpt", "best.ckpt": "best.ckpt", "last.ckpt": "last.ckpt"}
# The file the first process of a run chose for an alias: the processes it starts (DDP) load the same one, even if a
# newer run appears meanwhile. Set by the CLI for as long as it runs.
PINNED_CHECKPOINT_ENV = "LIT_CS201_PINNED_CHECKPOINT"
# Model arguments the CLI links from the datamodule; restored from the checkpoint, they would be set twice.
LINKED_MODEL_ARGS = ("num_classes", "input_shape")
# Data settings a checkpoint records that are the run's to choose, not the model's: which files to predict, where to
# cache decoded images, how many worker processes to start. Never taken from a checkpoint.
MACHINE_SETTINGS = ("predict_path", "cache_dir", "num_workers")
# Model settings that are not the model: an evaluation builds no optimizer or schedule, fetches no weights (they are
# the checkpoint's) and compiles nothing.
UNBUILT = ("pretrained", "optimizer", "lr_scheduler", "compile")


def resolve_checkpoint(
    value: str, save_dir: str = DEFAULT_RUNS_DIR, experiment: str | None = None, pin: bool = True
) -> Path:
    """The checkpoint file ``--ckpt_path value`` means: a file, or for ``best``/``last`` the newest run's.

    With ``pin``, the choice is kept in the environment for the processes this run starts (DDP), which must
    resolve to the same file; a command that starts none (export, serve) resolves without it.
    """
    path = Path(value)
    if value not in ALIASES or path.is_file():
        if path.is_dir():
            inside = sorted(str(p) for p in path.glob("*.ckpt")) or ["none"]
            raise UserError(f"--ckpt_path {value} is a folder; give a checkpoint file (in it: {', '.join(inside)})")
        if not path.is_file():
            raise UserError(f"--ckpt_path {value}: no such file")
        return path
    pinned = os.environ.get(PINNED_CHECKPOINT_ENV, "").split(os.pathsep, 1) if pin else []
    if len(pinned) == 2 and pinned[0] == value:
        return Path(pinned[1])
    name, root = ALIASES[value], Path(save_dir)
    # Listed, not globbed: an experiment called "exp[1]" is a name, not a pattern.
    experiments = [root / experiment] if experiment else sorted(root.iterdir()) if root.is_dir() else []
    candidates = [
        run / name for folder in experiments if folder.is_dir() for run in folder.iterdir() if (run / name).is_file()
    ]
    if not candidates:
        where = root / experiment if experiment else root
        raise UserError(
            f"--ckpt_path {value}: no {name} under {where}/; train first (lit-cs201 fit --config ...) or give the "
            "checkpoint's path"
        )
    chosen = max(candidates, key=lambda p: p.stat().st_mtime)
    print(_chosen(value, chosen, candidates), file=sys.stderr)
    if pin:
        os.environ[PINNED_CHECKPOINT_ENV] = os.pathsep.join([value, str(chosen)])
    return chosen


def _chosen(value: str, chosen: Path, candidates: list[Path]) -> str:
    """What ``--ckpt_path best|last`` picked: the newest run's file, with the run's score (best) or its epochs (last),
    and for best the run of the same experiment that scored higher, if one did (`lit-cs201 runs` lists them all)."""
    run = read_run(chosen.parent)
    line = f"--ckpt_path {value}: using {printable(chosen)} (the newest of {len(candidates)})"
    if chosen.name != "best.ckpt":
        return line + (f", {run.epochs} epochs trained." if run.epochs is not None else ".")
    line += f", val/acc {run.best_val_acc:.4f}." if run.best_val_acc is not None else "."
    rivals = [read_run(path.parent) for path in candidates if path.parent.parent == chosen.parent.parent]
    better = max(
        (rival for rival in rivals if rival.best_val_acc is not None and rival.path != chosen.parent),
        key=lambda rival: rival.best_val_acc,
        default=None,
    )
    if better is not None and run.best_val_acc is not None and better.best_val_acc > run.best_val_acc:
        line += (
            f"\nAn older run of {printable(run.experiment)} scored higher: {printable(better.path / chosen.name)} "
            f"(val/acc {better.best_val_acc:.4f}); give its path to use it. lit-cs201 runs compares them all."
        )
    return line


def check_fits(model: Any, checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint whose weights do not fit ``model``, naming both models (Lightning's own error lists
    every mismatching tensor, hundreds of lines for a ResNet)."""
    problem = _mismatch(model, checkpoint)
    if problem is not None:
        trained = _describe(checkpoint.hyper_parameters("model"))
        configured = _describe({"_class_path": type(model).__name__, **model.hparams})
        raise checkpoint.refuse(
            f"holds {trained}, which does not fit the configured {configured} ({problem}); "
            "drop the options that change the model or the data, or give a checkpoint of this model"
        )


def _mismatch(model: Any, checkpoint: Checkpoint) -> str | None:
    """The first difference between ``model``'s tensors and the checkpoint's weights, in words; None if they fit.

    The model's checkpoint hook first fills what older checkpoints lack, as loading would; on a copy, so that what
    Lightning restores from, running the hook itself, is the checkpoint as read."""
    saved = dict(checkpoint.state_dict)
    model.on_load_checkpoint({**checkpoint.content, "state_dict": saved})
    expected = model.state_dict()
    problem = next((f"{k} is missing from the checkpoint" for k in expected if k not in saved), None)
    problem = problem or next((f"the model has no {k}" for k in saved if k not in expected), None)
    return problem or next(
        (f"{k} is {list(saved[k].shape)} there and {list(v.shape)} here" for k, v in expected.items()
         if saved[k].shape != v.shape),
        None,
    )  # fmt: skip


def check_describes_weights(checkpoint: Checkpoint) -> None:
    """Refuse a checkpoint whose settings describe another model than its weights, before anything is built from
    them for real: a setting such as ``hidden_sizes: [1000000000]`` would otherwise take gigabytes of memory before
    the weights are compared."""
    settings = checkpoint.settings("model", drop=UNBUILT)
    if settings is None:
        return
    classes, count = checkpoint.hyper_parameters("data").get("classes"), settings["init_args"].get("num_classes")
    if classes is not None and len(classes) != count:
        raise checkpoint.refuse(
            f"its data settings name {len(classes)} classes but its model has {count}: not a checkpoint lit-cs201 "
            "wrote, or one edited since"
        )
    problem = _mismatch_before_building(checkpoint, settings["init_args"])
    if problem is not None:
        raise checkpoint.refuse(
            f"its settings describe {_describe(checkpoint.hyper_parameters('model'))}, but its weights are not that "
            f"model's ({problem}): not a checkpoint lit-cs201 wrote, or one edited since"
        )


def check_fits_before_building(checkpoint: Checkpoint, init_args: dict[str, Any]) -> None:
    """`check_fits` for the model ``init_args`` will build, before it is built: the data's image size sets an MLP's
    first layer, and a checkpoint's 4096-pixel images would take gigabytes before its weights were compared."""
    problem = _mismatch_before_building(checkpoint, init_args)
    if problem is not None:
        trained = _describe(checkpoint.hyper_parameters("model"))
        configured = _describe({"_class_path": checkpoint.class_of("model").__name__, **init_args})
        raise checkpoint.refuse(
            f"holds {trained}, which does not fit the configured {configured} ({problem}); "
            "drop the options that change the model or the data, or give a checkpoint of this model"
        )


def _mismatch_before_building(checkpoint: Checkpoint, init_args: dict[str, Any]) -> str | None:
    """`_mismatch` of the model ``init_args`` make, built on PyTorch's meta device: it allocates nothing and computes
    nothing (about 0.1 s for a ResNet-50)."""
    try:
        with torch.device("meta"):
            model = checkpoint.class_of("model")(**init_args)
    except (TypeError, UserError) as err:  # a setting missing, or out of its range
        raise checkpoint.refuse(f"its model settings do not build a model ({printable(err)})") from None
    return _mismatch(model, checkpoint)


def check_resume(model: Any, checkpoint: Checkpoint) -> None:
    """Refuse settings that a resumed fit could not apply: Lightning restores the optimizer's and the schedule's
    state from the checkpoint, over what the config builds.

    Another optimizer class would fail on its first step (``KeyError: 'momentum'`` for SGD after Adam); a changed
    schedule would be replaced by the saved one; a new learning rate under a schedule would be replaced by the
    schedule's next value. New settings of the same optimizer without a schedule are applied (`Classifier`).
    """
    saved = checkpoint.hyper_parameters("model")
    optimizer = saved.get("optimizer")
    trained = optimizer.get("class_path") if isinstance(optimizer, dict) else None  # None: passed from Python
    configured = model.optimizer_name
    if trained is not None and trained.rsplit(".", 1)[-1] != configured.rsplit(".", 1)[-1]:
        raise checkpoint.refuse(
            f"was trained with {trained}, not the configured {configured}, and an optimizer's "
            f"state does not carry over to another class; resume with --model.init_args.optimizer {trained}, or "
            "start a new run (without --ckpt_path) to train with the other optimizer"
        )
    schedule, was = model.hparams.get("lr_scheduler"), saved.get("lr_scheduler")
    if isinstance(was, dict) and schedule != was:
        raise checkpoint.refuse(
            f"continues the schedule it was saved with ({_short(was)}), not the configured "
            f"{_short(schedule)}; resume without changing lr_scheduler, or start a new run to train with another"
        )
    if was is not None:
        lr = init_args(model.hparams.get("optimizer")).get("lr")
        old = init_args(saved.get("optimizer")).get("lr")
        if lr is not None and old is not None and lr != old:
            raise checkpoint.refuse(
                f"the run's schedule ({_short(was)}) sets the learning rate from its start "
                f"value {old}, so a new lr {lr} cannot take effect on resume; resume without it, or start a new run"
            )


def _short(schedule: Any) -> str:
    if not isinstance(schedule, dict):
        return "none"
    settings = ", ".join(f"{k}={v}" for k, v in init_args(schedule).items() if v is not None)
    return f"{str(schedule.get('class_path')).rsplit('.', 1)[-1]}({settings})"


def _describe(hparams: dict[str, Any]) -> str:
    """A model as its architecture-defining hyper-parameters: ``Classifier(net=mlp, hidden_sizes=[10], ...)``."""
    name = str(hparams.get("_class_path", "model")).rsplit(".", 1)[-1]
    keys = ("net", "hidden_sizes" if hparams.get("net") == "mlp" else "stem", "num_classes", "input_shape")
    values = {k: list(v) if isinstance(v, tuple) else v for k in keys if (v := hparams.get(k)) is not None}
    return f"{name}({', '.join(f'{k}={v}' for k, v in values.items())})"
