"""Names that are not text, outputs that are not numbers, inputs that are ambiguous: file and class names that are
not UTF-8 or hold escape codes are read and shown escaped, never breaking the CSV or the terminal; a row the model
cannot give finite probabilities for is an error of its own; an Iris CSV or a SQuAD file that could be read two
ways is refused."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

import lit_cs201
from fake_image_folder import write_image, write_image_folder
from helpers import CONFIGS, run_cli, scalars, snapshot
from lit_cs201.course.qa import main as qa_main
from lit_cs201.course.squad import load_squad
from lit_cs201.data import ImageFolderDataModule
from lit_cs201.errors import UserError, printable
from lit_cs201.report import figures

PREFIX = "lit-cs201: error: "
QUIET = ["--trainer.enable_progress_bar=false"]
NOT_UTF8 = b"d\xf6g"  # "dög" in Latin-1, as an old archive or a Windows share names it
TINY = [
    "--data.init_args.data_dir=photos",
    "--data.init_args.image_size=null",
    "--data.init_args.train_augment=none",
    "--data.init_args.eval_augment=none",
    "--data.init_args.mean=null",
    "--data.init_args.std=null",
    "--data.init_args.val_size=4",
    "--model.init_args.net=mlp",
    "--model.init_args.pretrained=null",
    "--trainer.max_epochs=1",
    *QUIET,
]


def fs_name(folder: Path, name: bytes) -> Path:
    """``folder/name`` for a name given as bytes, as Python sees it (bytes that are not UTF-8 as lone surrogates)."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def rename(path: Path, to: Path) -> None:
    """Rename ``path`` to ``to``, a name that may not be UTF-8: the test is skipped where that cannot be."""
    try:
        path.rename(to)
    except UnicodeError:  # Windows: names are Unicode, a lone surrogate is none
        pytest.skip("file names here are Unicode: bytes that are not UTF-8 cannot name a file")
    except OSError as err:  # macOS: its file systems refuse such names
        if err.errno != errno.EILSEQ:
            raise
        pytest.skip("this file system refuses file names that are not UTF-8")


def assert_printable(text: str) -> None:
    """What reaches the terminal: UTF-8 (a lone surrogate makes ``print`` fail), no control character but line
    ends (an escape sequence could clear the screen), no bidirectional override (it reorders what is shown)."""
    text.encode("utf-8")
    acting = [c for c in text if (c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cs")) or c == "\u202e"]
    assert not acting, f"{acting[:3]} in {text[-500:]!r}"


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file that must be UTF-8 (``decode`` fails otherwise)."""
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))


def last_line(result) -> str:
    assert_printable(result.stdout + result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny fitted image folder whose second class folder (train/ and test/) is named in bytes that are not UTF-8;
    its work folder and best checkpoint."""
    work = tmp_path_factory.mktemp("hostile")
    write_image_folder(work / "photos", classes=("cat", "dog"), per_class=6, size=(8, 8), clutter=False)
    for split in ("train", "test"):
        rename(work / "photos" / split / "dog", fs_name(work / "photos" / split, NOT_UTF8))
    result = run_cli("fit", "--config", str(CONFIGS / "image_folder.yaml"), *TINY, cwd=work)
    assert_printable(result.stdout + result.stderr)
    return work, work / "runs" / "image_folder" / "version_0" / "best.ckpt"


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("iris")
    run_cli("fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=3", *QUIET, cwd=work)
    return work / "runs" / "iris" / "version_0" / "best.ckpt"


def newest(folder: Path) -> Path:
    """The newest ``version_N`` log folder in ``folder``."""
    return max(folder.glob("version_*"), key=lambda path: int(path.name.removeprefix("version_")))


def edited(checkpoint: Path, to: Path, **changes) -> Path:
    """A copy of ``checkpoint`` with top-level entries replaced, as a hand-edited or crafted file would be."""
    saved = torch.load(checkpoint, weights_only=True)
    torch.save({**saved, **changes}, to)
    return to


def with_weights(checkpoint: Path, to: Path, value: float) -> Path:
    """A copy of ``checkpoint`` with every floating-point weight of the network set to ``value``."""
    weights = torch.load(checkpoint, weights_only=True)["state_dict"]
    filled = {
        k: torch.full_like(v, value) if k.startswith("net.") and v.is_floating_point() else v
        for k, v in weights.items()
    }
    return edited(checkpoint, to, state_dict=filled)


# -- names that are not text ------------------------------------------------------------------------------------
def test_a_class_folder_named_in_bytes_that_are_not_utf8_trains_tests_and_predicts(run):
    work, checkpoint = run
    escaped = "d\\xf6g"  # the class name: the folder's name, printable, valid UTF-8
    assert torch.load(checkpoint, weights_only=True)["class_names"] == ["cat", escaped]

    tested = run_cli("test", "--ckpt_path", str(checkpoint), *QUIET, cwd=work)
    assert_printable(tested.stdout + tested.stderr)
    assert escaped in tested.stdout  # the per-class table
    assert f"test/acc/{escaped}" in scalars(checkpoint.parent)  # the test's curves are in the run it tested

    predicted = run_cli("predict", "--ckpt_path", str(checkpoint), *QUIET, cwd=work)
    assert_printable(predicted.stdout + predicted.stderr)
    rows = read_csv(checkpoint.parent / "predict" / "version_0" / "predictions.csv")
    assert [row["true_label"] for row in rows] == ["cat"] * 6 + [escaped] * 6  # the test images, read from disk
    assert {row["predicted"] for row in rows} <= {"cat", escaped}


def test_two_class_folders_whose_names_show_alike_are_refused(tmp_path):
    (tmp_path / "train").mkdir()
    for name in (b"a\\xff", b"a\xff"):  # the text "a\\xff", and the byte 0xff that is shown so
        write_image(tmp_path / "class" / "0.png", (0, 0, 0), (8, 8), "PNG", "RGB", seed=0)
        rename(tmp_path / "class", fs_name(tmp_path / "train", name))
    with pytest.raises(UserError, match=r"two class folders that both show as the class 'a\\\\xff'.*rename one"):
        ImageFolderDataModule(data_dir=str(tmp_path))


def test_files_named_in_bytes_or_with_escape_codes_are_predicted_and_shown_escaped(run, tmp_path):
    work, checkpoint = run
    folder = tmp_path / "new photos"
    folder.mkdir()
    image = next((work / "photos" / "test" / "cat").glob("*.png"))
    names = {b"bad\xff\xfe.png": "bad\\xff\\xfe.png", b"esc\x1b[2J\x1b[31mred.png": "esc\\x1b[2J\\x1b[31mred.png"}
    names |= {"line\nbreak\u202e.png".encode(): "line\\nbreak\\u202e.png", b"plain.png": "plain.png"}
    for name in names:
        shutil.copy(image, fs_name(tmp_path, b"plain"))
        rename(tmp_path / "plain", fs_name(folder, name))
    before_data, before_run = snapshot(tmp_path), snapshot(checkpoint.parent)

    result = run_cli("predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(folder), *QUIET, cwd=work)
    assert_printable(result.stdout + result.stderr)
    out = newest(checkpoint.parent / "predict")
    rows = read_csv(out / "predictions.csv")
    assert sorted(Path(row["path"]).name for row in rows) == sorted(names.values())
    assert all(row["predicted"] in ("cat", "d\\xf6g") and not row["error"] for row in rows)
    assert "esc\\x1b[2J\\x1b[31mred.png" in result.stdout  # the rows shown
    assert snapshot(tmp_path) == before_data  # the photos are read, not touched
    made = set(snapshot(checkpoint.parent)) - set(before_run)
    (events,) = [p for p in made if p.startswith("events.out.tfevents.")]  # the figure, in TensorBoard's run of the fit
    assert {Path(p).parent for p in made - {events}} == {out.relative_to(checkpoint.parent)}
    assert not [p for p in made if p.endswith(".partial")]


def test_a_checkpoint_whose_class_names_hold_escape_codes_shows_them_escaped(run, tmp_path):
    work, checkpoint = run
    crafted = ["\x1b[2J\x1b[Hcat", "dog\r\n\u202eevil"]
    shown = {"\\x1b[2J\\x1b[Hcat", "dog\\r\\n\\u202eevil"}
    checkpoint = edited(checkpoint, tmp_path / "crafted.ckpt", class_names=crafted)
    image = next((work / "photos" / "test" / "cat").glob("*.png"))

    result = run_cli("predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(image), *QUIET, cwd=work)
    assert_printable(result.stdout + result.stderr)
    (row,) = read_csv(tmp_path / "predict" / "version_0" / "predictions.csv")
    assert {row["predicted"], row["top1"], row["top2"]} == shown
    assert row["predicted"] in result.stdout
    assert {name for name, _ in lit_cs201.predict(checkpoint, image)[0].top} == shown
    # The per-class table `test` prints and the figures' titles.
    assert_printable(figures.accuracy_table([0.5, 1.0], crafted, [3, 4]) + "".join(figures.caption(c) for c in crafted))


# -- outputs that are not numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [float("nan"), 3e38], ids=["nan-weights", "weights-that-overflow"])
def test_a_checkpoint_that_gives_no_finite_probabilities_predicts_nothing(run, tmp_path, weights):
    work, checkpoint = run
    checkpoint = with_weights(checkpoint, tmp_path / "broken.ckpt", weights)
    image = next((work / "photos" / "test" / "cat").glob("*.png"))

    result = run_cli(
        "predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(image), *QUIET, check=False, cwd=work
    )
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith(PREFIX) and "not" in line and "finite" in line
    assert not (tmp_path / "predict").exists()  # the half-made log folder is removed
    try:
        predictions = lit_cs201.predict(checkpoint, [image, np.asarray(Image.open(image).convert("RGB"))])
    except UserError:  # refused as a whole: also no class from nonsense
        return
    assert [(p.predicted, p.probability, p.top) for p in predictions] == [(None, None, [])] * 2
    assert all("not finite" in p.error for p in predictions)


def test_an_iris_row_too_large_to_standardise_is_an_error_of_its_own(iris, tmp_path):
    header = "sepal_length,sepal_width,petal_length,petal_width\n"
    (tmp_path / "flowers.csv").write_text(header + "5.1,3.5,1.4,0.2\n1e308,3.0,5.2,2.3\n6.7,3.0,5.2,2.3\n")
    result = run_cli("predict", "--ckpt_path", str(iris), "--data.predict_path", "flowers.csv", *QUIET, cwd=tmp_path)
    assert_printable(result.stdout + result.stderr)
    predicted = newest(iris.parent / "predict")
    rows = {row["path"]: row for row in read_csv(predicted / "predictions.csv")}
    assert [bool(rows[f"flowers.csv:{n}"]["predicted"]) for n in (2, 3, 4)] == [True, False, True]
    bad = rows["flowers.csv:3"]
    assert "too large" in bad["error"] and bad["probability"] == bad["top1_probability"] == ""

    (tmp_path / "bad.csv").write_text(header + "1e308,3.0,5.2,2.3\nnan,3.0,5.2,2.3\n")
    result = run_cli(
        "predict", "--ckpt_path", str(iris), "--data.predict_path", "bad.csv", *QUIET, check=False, cwd=tmp_path
    )
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith(PREFIX) and "none of its 2 flowers" in line and "bad.csv:3" in line
    assert newest(iris.parent / "predict") == predicted  # the half-made log folder is removed


# -- inputs that could be read two ways ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header, named",
    [
        (
            "sepal length (cm),sepal width (cm),petal length (cm),petal length (cm),petal width (cm)",
            "'petal length (cm)'",
        ),
        ("sepal_length,sepal_width,petal length (cm),petal_width,petal_length", "'petal length (cm)', 'petal_length'"),
    ],
    ids=["same-column-twice", "synonyms"],
)
def test_an_iris_csv_with_a_measurement_in_two_columns_is_refused(iris, tmp_path, header, named):
    (tmp_path / "flowers.csv").write_text(f"{header}\n5.1,3.5,1.4,0.2,6.0\n")
    before = snapshot(iris.parent)
    result = run_cli(
        "predict", "--ckpt_path", str(iris), "--data.predict_path", "flowers.csv", *QUIET, check=False, cwd=tmp_path
    )
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith(PREFIX) and f"petal length: {named}" in line and "remove or rename" in line
    assert snapshot(iris.parent) == before


def squad_file(path: Path, ids: list[str]) -> Path:
    qas = [{"id": i, "question": "Who?", "answers": [{"text": "Turing", "answer_start": 0}]} for i in ids]
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "Turing wrote it.", "qas": qas}]}]}))
    return path


def test_a_squad_file_that_gives_two_questions_one_id_is_refused(tmp_path, capsys):
    path = squad_file(tmp_path / "dev.json", ["a", "b", "a", "c", "b", "a"])
    with pytest.raises(UserError, match=r"same id: 'a' \(3 times\), 'b' \(2 times\)"):
        load_squad(path)
    assert qa_main(["--model", str(tmp_path / "no model"), "--squad", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "same id" in line and "one id per question" in line
    assert load_squad(squad_file(tmp_path / "ok.json", ["a", "b"]))[1].id == "b"


def test_a_squad_file_nested_too_deep_to_read_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert qa_main(["--model", str(tmp_path / "no model"), "--squad", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "nests its JSON deeper than it can be read" in line and str(path) in line


def test_a_class_name_no_installed_font_draws_is_shown_as_its_code_with_one_warning(monkeypatch):
    monkeypatch.setattr(figures, "_drawable", lambda: frozenset(range(128)))  # as with DejaVu Sans alone
    figures._warn_missing_glyphs.cache_clear()
    with pytest.warns(UserWarning, match="fonts-noto-cjk") as caught:
        titles = [figures.caption("猫"), figures.caption("狗 dog")]
    assert titles == ["\\u732b", "\\u72d7 dog"] and len(caught) == 1  # readable, and told how to draw them


def test_installed_cjk_fonts_become_matplotlib_fallbacks(monkeypatch):
    fonts = [SimpleNamespace(name=name) for name in ("DejaVu Sans", "WenQuanYi Micro Hei", "Noto Sans CJK JP")]
    monkeypatch.setattr(figures.font_manager.fontManager, "ttflist", fonts)
    with matplotlib.rc_context({"font.family": ["sans-serif"]}):
        figures._add_cjk_fallbacks()
        assert matplotlib.rcParams["font.family"] == ["sans-serif", "Noto Sans CJK JP", "WenQuanYi Micro Hei"]


def test_a_cjk_class_name_is_drawn_where_a_cjk_font_is_installed():
    if not {font.name for font in figures.font_manager.fontManager.ttflist} & set(figures.CJK_FONTS):
        pytest.skip("no CJK font installed (e.g. apt-get install fonts-noto-cjk)")
    assert figures.caption("猫") == "猫"


def test_printable_escapes_what_would_act_and_keeps_what_shows():
    assert printable(os.fsdecode(b"a\xff\xfe")) == "a\\xff\\xfe" == printable(b"a\xff\xfe")
    assert printable("\x1b[2J\x9b\x7f\r\n\t\u2028\u202e") == "\\x1b[2J\\x9b\\x7f\\r\\n\\t\\u2028\\u202e"
    assert printable("猫 dög 😀 a b") == "猫 dög 😀 a b"  # CJK, accents, emoji and spaces are text
    assert printable(printable("\x1b")) == printable("\x1b")
