"""``lit-cs201 predict --ckpt_path model.onnx --data.predict_path ...``: the same ``predictions.csv`` and
``predictions.png`` as from the checkpoint, from an exported model, without importing torch or Lightning.

They are written to ``predict/version_N/`` beside the model file, as a checkpoint's go to ``<run>/predict/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lit_cs201.data.decode import IMAGE_SUFFIXES
from lit_cs201.data.inputs import apply_inversion, expand_paths, none_readable
from lit_cs201.deploy.runtime import ExportedModel
from lit_cs201.errors import ArgumentParser, UserError, printable
from lit_cs201.report.predictions import (
    Row,
    file_table,
    first_rows,
    grid_rows,
    grid_titles,
    ranked_rows,
    summary,
    write_csv,
)
from lit_cs201.report.results import NONFINITE

#: The suffix that makes ``predict --ckpt_path`` an exported model rather than a checkpoint.
EXPORTED_SUFFIX = ".onnx"
#: Rows shown on the terminal, as the checkpoint's writer shows them.
SHOWN = 5
#: Inputs given to onnxruntime at once.
BATCH = 64


def names_exported_model(args: list[str]) -> bool:
    """Whether ``predict ARGS`` names an exported model as its ``--ckpt_path``."""
    value = None  # the last one given counts, as the parser takes it
    for i, arg in enumerate(args):
        if arg.startswith("--ckpt_path="):
            value = arg.split("=", 1)[1]
        elif arg == "--ckpt_path" and i + 1 < len(args):
            value = args[i + 1]
    return value is not None and value.lower().endswith(EXPORTED_SUFFIX)


def main(args: list[str]) -> int:
    """``lit-cs201 predict ARGS`` with an exported model."""
    parser = ArgumentParser(
        prog="lit-cs201 predict",
        description="Classify files with a model exported by lit-cs201 export (no torch needed).",
        allow_abbrev=False,
    )
    parser.add_argument("--ckpt_path", required=True, help="the exported .onnx file")
    for flag in ("--data.predict_path", "--data.init_args.predict_path"):
        parser.add_argument(
            flag, dest="predict_path", nargs="+", help="image files, folders or globs (Iris: CSV files)"
        )
    options, unknown = parser.parse_known_args(args)
    if unknown:
        raise UserError(
            f"{unknown[0]}: an exported model ({options.ckpt_path}) takes only --ckpt_path and --data.predict_path; "
            "its settings are fixed in the file (export the checkpoint again to change them)"
        )
    path = Path(options.ckpt_path)
    if path.is_dir():
        raise UserError(f"--ckpt_path {options.ckpt_path} is a folder; give the exported .onnx file")
    if not path.exists():
        raise UserError(f"--ckpt_path {options.ckpt_path}: no such file")
    if not options.predict_path:
        raise UserError(
            f"an exported model carries no test split: give the files to classify, e.g. lit-cs201 predict --ckpt_path "
            f"{options.ckpt_path} --data.predict_path 'photos/*.jpg'"
        )
    model = ExportedModel(path)
    paths = _listed(options.predict_path)
    if model.takes_images:
        files = [str(f) for f in expand_paths(paths, IMAGE_SUFFIXES)]
        batch, bad = model.decode(files)
        unit = "files"
    else:
        files, batch, bad = model.measurements(paths)  # expands folders and globs of CSV files itself
        unit = "rows"
    kept = [f for i, f in enumerate(files) if i not in bad]
    errors = [(files[i], reason) for i, reason in sorted(bad.items())]
    if not kept:
        raise none_readable(options.predict_path, errors)
    probs = [model.probabilities(batch[i : i + BATCH]) for i in range(0, len(batch), BATCH)]
    rows = ranked_rows(np.concatenate(probs), range(len(kept)))
    if not any(top for _, _, top, _ in rows):
        raise UserError(f"none of the {len(files)} inputs got a prediction: {NONFINITE}")
    names = [printable(name) for name in model.classes]
    header, table = file_table(rows, kept, errors, names)
    figure = _figure(batch, rows, names, kept, model.metadata["invert"]) if model.takes_images else None
    log_dir = _new_version(path.parent / "predict")  # only now: a failure above leaves no empty folder
    csv_path = log_dir / "predictions.csv"
    write_csv(csv_path, [header, *table])
    print(f"{summary(csv_path, rows, errors, unit)}\n{first_rows(header, table, SHOWN)}", flush=True)
    if figure is not None:
        figure.savefig(log_dir / "predictions.png", dpi=120)
    print(f"\nLogs and results of this predict: {printable(log_dir)}")
    return 0


def _listed(values: list[str]) -> list[str]:
    """The paths of ``--data.predict_path``: several values, or one list in the flow syntax the checkpoint's command
    takes (``"[a.png, b.png]"``)."""
    if len(values) == 1 and values[0].startswith("[") and values[0].endswith("]"):
        import yaml

        try:
            listed = yaml.safe_load(values[0])
        except yaml.YAMLError:
            listed = None
        if isinstance(listed, list) and all(isinstance(item, str) for item in listed):
            return listed
    return values


def _new_version(folder: Path) -> Path:
    """A new ``version_N`` folder in ``folder``, N one more than the highest there; made here, so never shared."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{printable(folder)} is a file: predictions go in a folder of that name beside the model")
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[8:]) for p in folder.glob("version_*") if p.name[8:].isascii() and p.name[8:].isdigit()]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (folder / f"version_{version}").mkdir()
            return folder / f"version_{version}"
        except FileExistsError:  # another predict took it meanwhile
            version += 1


def _figure(images: np.ndarray, rows: list[Row], names: list[str], files: list[str], invert: str) -> Any:
    """The picture of predicted images from across the classes as the model saw them (inverted where its rule
    says), titled with their file's name, class and probability, as from the checkpoint."""
    from lit_cs201.report import figures

    shown = grid_rows(rows, figures.GRID_SIZE)
    pixels = apply_inversion(images[[row[0] for row in shown]].copy(), invert)
    return figures.image_grid(pixels, grid_titles(shown, names, files))
