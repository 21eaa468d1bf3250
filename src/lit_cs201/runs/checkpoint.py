"""A checkpoint, read as data: bounded, checked, and rebuilt only from classes this package trusts.

Checkpoints are files people hand to each other ("here is my trained model"), so nothing in one is trusted:

    file ──load_plain (weights_only; stored zip members; a bounded pickle)──▶ dict
         ──read_checkpoint (a bounded walk; Lightning's keys, typed; weights finite)──▶ Checkpoint
         ──Checkpoint.settings (each value checked against the parameter it sets)──▶ {class_path, init_args}

A class a checkpoint names, at any depth of its settings, is looked up by its exact path in `trusted_classes`
(this package's model and datamodules, torch.optim's optimizers and torch.optim.lr_scheduler's schedules) and
refused otherwise: nothing is imported for it. A text value may only set a parameter that takes text, because
jsonargparse, which builds the classes from these settings, imports the dotted name a parameter typed as a class
or a callable is given. Numbers, booleans and None import nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from packaging.version import InvalidVersion, Version

from lit_cs201.data.safe_load import load_plain
from lit_cs201.errors import UserError
from lit_cs201.runs.parameter_types import UNKNOWN, class_kinds, constructor_parameters, takes, type_name

#: Values (containers, numbers, strings, tensors) a checkpoint may hold, counted as a walk meets them: settings that
#: share one list many times over (a few KB on disk, a "billion laughs") are refused before anything expands them.
MAX_VALUES = 1_000_000
#: Characters of text a checkpoint may hold, counted the same way.
MAX_TEXT = 16 << 20
#: How many times over its tensors may use the bytes of the file (two for weights tied to one another).
SHARED_BYTES = 2
#: Nesting a checkpoint may have; Lightning's own goes about six levels deep.
MAX_DEPTH = 64
#: Items of a list setting (layer widths, a mean per channel, an image's sides), but for the `LONG_LISTS`: a list
#: of defaults costs jsonargparse time that grows with the square of its length.
MAX_ITEMS = 64
LONG_LISTS = frozenset({"classes"})  # one name a class: the CLI sets them after the parse
#: The oldest Lightning whose checkpoints are read; older ones have another layout.
OLDEST_LIGHTNING = Version("2.0.0")
#: Lightning's keys for the model's and the datamodule's settings.
SETTINGS_KEYS = {"model": "hyper_parameters", "data": "datamodule_hyper_parameters"}
#: Entries LightningCLI adds to the settings it saves: the class, and its own loader (never used here).
CLASS_KEY, LOADER_KEY = "_class_path", "_instantiator"


@functools.cache
def trusted_classes() -> dict[str, type]:
    """Every class a checkpoint may name, by each path it may name it with: ``lit_cs201.data.MNISTDataModule`` or
    ``lit_cs201.data.mnist.MNISTDataModule``, ``torch.optim.SGD`` or ``torch.optim.sgd.SGD``."""
    import lit_cs201.data
    from lit_cs201.data.base import ClassificationDataModule
    from lit_cs201.models import Classifier

    datamodules = [getattr(lit_cs201.data, name) for name in lit_cs201.data.__all__]
    exported = [("lit_cs201.models", Classifier), *(("lit_cs201.data", cls) for cls in datamodules)]
    schedules = torch.optim.lr_scheduler
    for package, base in ((torch.optim, torch.optim.Optimizer), (schedules, schedules.LRScheduler)):
        found = (getattr(package, name) for name in package.__all__)
        exported += [(package.__name__, cls) for cls in found if isinstance(cls, type) and issubclass(cls, base)]
    bases = (ClassificationDataModule, torch.optim.Optimizer, schedules.LRScheduler)
    return {
        path: cls
        for package, cls in exported
        if cls not in bases
        for path in (f"{package}.{cls.__name__}", f"{cls.__module__}.{cls.__name__}")
    }


def _bases() -> dict[str, type]:
    from lit_cs201.data.base import ClassificationDataModule
    from lit_cs201.models import Classifier

    return {"model": Classifier, "data": ClassificationDataModule}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose structure was checked: what it holds, and where it was read from."""

    path: Path
    content: dict[str, Any]
    what: str = "--ckpt_path"  # the option that named it, which every message starts with
    stamp: tuple[int, ...] = ()  # the file's `file_stamp` when it was read

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.content["state_dict"]

    def hyper_parameters(self, key: Literal["model", "data"]) -> dict[str, Any]:
        return self.content.get(SETTINGS_KEYS[key]) or {}

    def class_of(self, key: Literal["model", "data"]) -> type | None:
        """The trusted class the checkpoint's model or data settings name, or None if they name none."""
        class_path = self.hyper_parameters(key).get(CLASS_KEY)
        if class_path is None:
            return None
        where = f"{SETTINGS_KEYS[key]}.{CLASS_KEY}"
        cls = self._trusted(class_path, where)
        if not issubclass(cls, _bases()[key]):
            kind = "model" if key == "model" else "datamodule"
            raise self.refuse(f"{where} names {_shown(class_path)}, which is not a {kind}")
        return cls

    def settings(self, key: Literal["model", "data"], drop: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The model's or the datamodule's settings as ``{class_path, init_args}``, every value checked against the
        parameter of the class it sets; None where the checkpoint names no class. Settings in ``drop``, and those
        the class no longer takes (a release that removed a parameter), are left out; one the class took only after
        the checkpoint was written is what the class's ``old_checkpoint_defaults`` says it was trained with."""
        cls = self.class_of(key)
        if cls is None:
            return None
        hparams = {k: v for k, v in self.hyper_parameters(key).items() if k not in (CLASS_KEY, LOADER_KEY)}
        where = SETTINGS_KEYS[key]
        self._refuse_untrusted(hparams, where)  # in every setting, even one left out or unused
        parameters = constructor_parameters(cls)
        older = getattr(cls, "old_checkpoint_defaults", {})
        init_args = {**older, **{k: v for k, v in hparams.items() if k in parameters}}
        for name, value in init_args.items():
            self._check_value(parameters[name], value, f"{where}.{name}", long=name in LONG_LISTS)
        return {
            "class_path": self.hyper_parameters(key)[CLASS_KEY],
            "init_args": {k: v for k, v in init_args.items() if k not in drop},
        }

    # -- checks ---------------------------------------------------------------------------------------------------
    def refuse(self, problem: str) -> UserError:
        return UserError(f"{self.what} {self.path}: {problem}")

    def _trusted(self, class_path: Any, where: str) -> type:
        cls = trusted_classes().get(class_path) if isinstance(class_path, str) else None
        if cls is None:
            raise self.refuse(
                f"{where} names {_shown(class_path)}, which is not a class a checkpoint may name (lit_cs201's model "
                "and datamodules, torch.optim's optimizers and schedules), so the checkpoint is not used"
            )
        return cls

    def _refuse_untrusted(self, value: Any, where: str) -> None:
        """Refuse a ``class_path`` at any depth of ``value`` that is not trusted, even in a setting that is unused."""
        if isinstance(value, dict):
            if "class_path" in value:
                self._trusted(value["class_path"], f"{where}.class_path")
            for key, item in value.items():
                self._refuse_untrusted(item, f"{where}.{key}")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                self._refuse_untrusted(item, f"{where}[{i}]")

    def _check_value(self, annotation: Any, value: Any, where: str, long: bool = False) -> None:
        """Refuse ``value`` for a parameter of type ``annotation`` unless it is plain data of that type, and a list
        of at most `MAX_ITEMS` unless ``long``."""
        if isinstance(value, list | tuple) and len(value) > MAX_ITEMS and not long:
            raise self.refuse(f"{where} holds {len(value):,} values; a setting holds at most {MAX_ITEMS}")
        if isinstance(value, dict) and "class_path" in value:
            self._check_class_setting(annotation, value, where)
        elif not takes(annotation, value):
            expected = "a number" if annotation is UNKNOWN else type_name(annotation)
            raise self.refuse(f"{where} is {_shown(value)}, which is not a value this setting takes ({expected})")

    def _check_class_setting(self, annotation: Any, value: dict[str, Any], where: str) -> None:
        """``{class_path, init_args}`` for a parameter that takes a class (an optimizer, a schedule)."""
        cls = self._trusted(value["class_path"], f"{where}.class_path")
        kinds = class_kinds(annotation)
        if not (kinds and issubclass(cls, kinds)):
            raise self.refuse(f"{where} names {_shown(value['class_path'])}, which is not a class this setting takes")
        if extra := sorted(set(value) - {"class_path", "init_args"}):
            raise self.refuse(f"{where} has {', '.join(map(str, extra))} beside class_path and init_args")
        init_args = value.get("init_args") or {}
        if not isinstance(init_args, dict):
            raise self.refuse(f"{where}.init_args is not a mapping of settings")
        # The first parameter (an optimizer's params, a schedule's optimizer) is what the model passes in.
        parameters = dict(list(constructor_parameters(cls).items())[1:])
        for name, item in init_args.items():
            if name not in parameters:
                raise self.refuse(f"{where}.init_args has {_shown(name)}, which {value['class_path']} does not take")
            self._check_value(parameters[name], item, f"{where}.init_args.{name}")


def read_checkpoint(path: Path, what: str = "--ckpt_path") -> Checkpoint:
    """Read the Lightning checkpoint at ``path`` as plain data and check its structure: a one-line `UserError`
    starting with ``what`` for anything that is not a checkpoint this package can use."""
    if Path(path).suffix.lower() in (".onnx", ".pt2"):
        raise UserError(
            f"{what} {path} is an exported model, not a checkpoint: lit-cs201 predict --ckpt_path MODEL.onnx "
            "--data.predict_path FILES predicts with an .onnx; the other commands need the .ckpt it was exported from"
        )
    stamp = file_stamp(path)
    return checked(Checkpoint(Path(path), load_plain(path, what, "checkpoint"), what, stamp))


def file_stamp(path: Path) -> tuple[int, ...]:
    """What changes when a file is replaced or rewritten: its device, inode, size, and modification time."""
    stat = Path(path).stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def checked(checkpoint: Checkpoint) -> Checkpoint:
    """``checkpoint`` once its structure is checked; a one-line `UserError` if it is not one this package uses."""
    content = checkpoint.content
    if not isinstance(content, dict) or not isinstance(content.get("state_dict"), dict):
        raise checkpoint.refuse("not a Lightning checkpoint (no state_dict)")
    _check_size(checkpoint)
    _check_version(checkpoint)
    for key in SETTINGS_KEYS.values():
        if not isinstance(content.get(key) or {}, dict):
            raise checkpoint.refuse(f"its {key} are {_kind(content[key])}, not a mapping of settings")
    names = content.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise checkpoint.refuse(f"its class_names are not a list of names: {_shown(names)}")
    _check_weights(checkpoint)
    for key in SETTINGS_KEYS:
        checkpoint.class_of(key)  # a class it names is trusted, or the checkpoint is refused now
    return checkpoint


def _check_size(checkpoint: Checkpoint) -> None:
    """Walk everything the checkpoint holds, counting values and text as they are met (a shared list counts each
    time it appears, as anything expanding it would), and refuse it past `MAX_VALUES`, `MAX_TEXT` or `MAX_DEPTH`."""
    values = text = tensor_bytes = 0
    stack: list[tuple[Any, int]] = [(checkpoint.content, 0)]
    while stack:
        value, depth = stack.pop()
        values += 1
        if isinstance(value, str | bytes):
            text += len(value)
        elif isinstance(value, torch.Tensor):
            _check_tensor(checkpoint, value)
            tensor_bytes += value.numel() * value.element_size()
        elif isinstance(value, dict | list | tuple):
            if depth == MAX_DEPTH:
                raise checkpoint.refuse(f"holds values nested more than {MAX_DEPTH} deep, so it is not read")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack += [(item, depth + 1) for item in items]
        if values > MAX_VALUES or text > MAX_TEXT:
            raise checkpoint.refuse(
                f"holds more than {MAX_VALUES:,} values or {MAX_TEXT >> 20} MiB of text once its shared parts are "
                "counted each time they appear (no checkpoint needs that many), so it is not read"
            )
    # Tensors may share their bytes (tied weights do), but thousands of views of one block would each be copied.
    size = Path(checkpoint.path).stat().st_size
    if tensor_bytes > SHARED_BYTES * size + (1 << 20):
        raise checkpoint.refuse(
            f"its tensors take {tensor_bytes / 2**20:,.0f} MiB but the file {size / 2**20:,.1f} MiB: many tensors "
            "share the same stored values, which loading would copy each time; not a checkpoint torch.save wrote"
        )


def _check_tensor(checkpoint: Checkpoint, tensor: torch.Tensor) -> None:
    """Refuse a tensor that claims more values than the file holds for it: a stride of 0 makes one stored number
    stand for billions, which the first copy (a dtype conversion on resume, a finite check) then expands."""
    if tensor.layout != torch.strided:
        raise checkpoint.refuse(f"holds a {tensor.layout} tensor; checkpoints hold dense tensors only")
    if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
        raise checkpoint.refuse(
            f"holds a tensor of shape {list(tensor.shape)} made of {tensor.untyped_storage().nbytes():,} bytes "
            "(its values repeat one another through its strides): not a tensor torch.save wrote, so it is not read"
        )


def _check_version(checkpoint: Checkpoint) -> None:
    version = checkpoint.content.get("pytorch-lightning_version")
    if not isinstance(version, str):
        raise checkpoint.refuse("records no pytorch-lightning_version, so it was not written by Lightning's Trainer")
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise checkpoint.refuse(f"its pytorch-lightning_version {_shown(version)} is not a version number") from None
    if parsed < OLDEST_LIGHTNING:
        raise checkpoint.refuse(
            f"was written by Lightning {version}; checkpoints of Lightning {OLDEST_LIGHTNING} or newer are read"
        )


#: The best validation accuracy so far (`Classifier.val_acc_best`, a MaxMetric) before there is one: minus infinity.
UNSCORED = ("val_acc_best.max_value", float("-inf"))


def _check_weights(checkpoint: Checkpoint) -> None:
    """Weights are tensors under names, and finite: a model with NaN weights answers NaN for every input."""
    for name, tensor in checkpoint.state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise checkpoint.refuse(f"its state_dict maps {_shown(name)} to {_kind(tensor)}, not a tensor")
        if name == UNSCORED[0] and tensor.numel() == 1 and float(tensor) == UNSCORED[1]:
            continue  # saved before the first validation (a learning-rate finder's starting point): no weight
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise checkpoint.refuse(
                f"its weights {name} are not all finite numbers (NaN or infinite): a model that diverged, which "
                "answers nonsense for every input; use a checkpoint saved before it diverged"
            )


def _shown(value: Any) -> str:
    """A value from the file, for a message: quoted, escaped, and cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    return "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"
