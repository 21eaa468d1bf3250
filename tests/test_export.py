"""``lit-cs201 export`` and the torch-free runtime: one self-contained file whose answers are the checkpoint's,
image for image, through `lit_cs201.deploy.ExportedModel` and ``lit-cs201 predict --ckpt_path model.onnx``."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import lit_cs201
from helpers import CONFIGS, run_cli
from lit_cs201.data.mnist import read_idx
from lit_cs201.deploy import ExportedModel
from lit_cs201.deploy import check as check_module
from lit_cs201.deploy import export as export_module
from lit_cs201.errors import UserError
from synthetic import write_mnist

QUIET = ["--trainer.enable_progress_bar=false"]
PREFIX = "lit-cs201: error: "
#: What a process of the torch-free runtime test cannot import.
HEAVY = ("torch", "torchvision", "lightning", "pytorch_lightning", "torchmetrics", "jsonargparse", "tensorboard")
BLOCKER = f"""
import importlib.abc, runpy, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} is not installed here")
sys.meta_path.insert(0, Blocked())
"""


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> tuple[Path, Path]:
    """An MNIST checkpoint (``mnist_cnn``, with its data still there), and a folder of its test digits as files: light
    on black as MNIST has them, dark on white (inverted by the checkpoint's rule), half transparent, and 16-bit."""
    work = tmp_path_factory.mktemp("mnist")
    raw = write_mnist(work / "data", n_train=96, n_test=24)
    args = ["--data.init_args.data_dir=data", "--data.init_args.val_size=16", "--trainer.max_epochs=2", *QUIET]
    run_cli("fit", "--config", str(CONFIGS / "mnist.yaml"), *args, cwd=work)
    digits = read_idx(raw / "t10k-images-idx3-ubyte", ndim=3)
    files = work / "digits"
    files.mkdir()
    for i, digit in enumerate(digits[:12]):
        kind = i % 4
        if kind == 0:
            Image.fromarray(digit).save(files / f"{i}_plain.png")
        elif kind == 1:
            Image.fromarray(255 - digit).resize((56, 40)).save(files / f"{i}_paper.jpg", quality=95)
        elif kind == 2:
            alpha = np.where(digit > 0, 255, 0).astype(np.uint8)
            Image.fromarray(np.stack([digit] * 3 + [alpha], axis=-1)).save(files / f"{i}_transparent.png")
        else:
            Image.fromarray(digit.astype(np.uint16) * 257).save(files / f"{i}_16bit.png")
    return work / "runs" / "mnist" / "version_0" / "best.ckpt", files


def test_an_export_is_one_file_that_describes_itself(mnist, capsys, monkeypatch):
    checkpoint, _ = mnist
    monkeypatch.chdir(checkpoint.parents[3])  # where it was trained: its data_dir is there
    before = set(checkpoint.parent.iterdir())
    target = export_module.export(checkpoint)
    out = capsys.readouterr().out
    assert target == checkpoint.with_suffix(".onnx")
    assert set(checkpoint.parent.iterdir()) - before == {target}  # no .onnx.data beside it, no partial file left
    assert "on the 24 test images, at batch sizes 1, 2, 21: the top-1 class agrees on 24 of 24 (100.00 %)" in out

    model = onnx.load(str(target))  # the weights are inside: a copy of this one file is the whole model
    assert all(not t.HasField("data_location") or t.data_location == 0 for t in model.graph.initializer)
    (images,) = model.graph.input
    dims = images.type.tensor_type.shape.dim
    assert images.name == "images" and images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]  # a dynamic batch
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    meta = json.loads({p.key: p.value for p in model.metadata_props}["lit_cs201"])
    assert meta["classes"] == [str(d) for d in range(10)] and meta["image_size"] == [28, 28]
    assert meta["mean"] == [pytest.approx(0.1307)] and meta["std"] == [pytest.approx(0.3081)]
    assert meta["invert"] == "light_background" and meta["input"]["dtype"] == "uint8"
    assert meta["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert 0 <= meta["test/acc"] <= 1 and meta["test_samples"] == 24
    assert meta["package"] == f"lit-cs201 {lit_cs201.__version__}"


def test_the_runtime_gives_the_checkpoints_predictions_image_for_image(mnist):
    checkpoint, files = mnist
    target = export_module.export(checkpoint, checkpoint.parent / "same.onnx")
    exported = ExportedModel(target).predict(files)
    from_checkpoint = lit_cs201.predict(checkpoint, files)
    assert [p.source for p in exported] == [p.source for p in from_checkpoint] and len(exported) == 12
    for ours, theirs in zip(exported, from_checkpoint, strict=True):
        assert ours.error is None and ours.predicted == theirs.predicted
        assert [name for name, _ in ours.top] == [name for name, _ in theirs.top]
        assert ours.probability == pytest.approx(theirs.probability, abs=1e-5)
    # Images in memory too, as the Python API takes them.
    array = np.asarray(Image.open(next(files.glob("0_*"))))
    (in_memory,) = ExportedModel(target).predict([array])
    assert in_memory.source == "<ndarray 0>" and in_memory.predicted == exported[0].predicted


def test_a_paper_digit_is_inverted_inside_the_graph(mnist, tmp_path):
    checkpoint, _ = mnist
    target = export_module.export(checkpoint, tmp_path / "model.onnx")
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    model = ExportedModel(target)
    light, paper = model.probabilities(np.stack([digit, 255 - digit])[:, None])
    np.testing.assert_allclose(light, paper, rtol=0, atol=1e-6)  # the same digit, once it is inverted


def test_predict_from_the_export_writes_the_checkpoints_csv_and_picture(mnist, tmp_path):
    checkpoint, files = mnist
    target = export_module.export(checkpoint, tmp_path / "model.onnx")
    run_cli("predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(files), *QUIET, cwd=tmp_path)
    result = run_cli("predict", "--ckpt_path", str(target), "--data.predict_path", str(files), cwd=tmp_path)
    assert "Wrote 12 predictions to" in result.stdout
    ours = read_csv(tmp_path / "predict" / "version_0" / "predictions.csv")
    theirs = read_csv(checkpoint.parent / "predict" / "version_0" / "predictions.csv")
    assert list(ours[0]) == list(theirs[0])
    for a, b in zip(ours, theirs, strict=True):
        assert (a["path"], a["predicted"], a["top2"]) == (b["path"], b["predicted"], b["top2"])
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=2e-4)
    assert (tmp_path / "predict" / "version_0" / "predictions.png").stat().st_size > 10_000


def test_the_runtime_and_predict_run_where_torch_cannot_be_imported(mnist, tmp_path):
    checkpoint, files = mnist
    target = export_module.export(checkpoint, tmp_path / "model.onnx")
    expected = [(p.source, p.predicted) for p in lit_cs201.predict(checkpoint, files)]
    script = BLOCKER + (
        "from lit_cs201.deploy import ExportedModel\n"
        f"found = ExportedModel({str(target)!r}).predict({str(files)!r})\n"
        "print([(p.source, p.predicted) for p in found])\n"
        "assert 'torch' not in sys.modules and 'onnxruntime' in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(expected)

    # The command too: `python -m lit_cs201 predict` with an exported model imports nothing of torch.
    command = BLOCKER + "sys.argv = ['lit-cs201', *sys.argv[1:]]\nrunpy.run_module('lit_cs201', run_name='__main__')\n"
    args = ["predict", "--ckpt_path", str(target), "--data.predict_path", str(files)]
    result = subprocess.run(
        [sys.executable, "-c", command, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote 12 predictions" in result.stdout and (tmp_path / "predict" / "version_0" / "predictions.csv").exists()


def test_an_export_that_fails_its_check_writes_nothing(mnist, tmp_path, monkeypatch):
    checkpoint, _ = mnist
    earlier = tmp_path / "model.onnx"
    earlier.write_bytes(b"an earlier export")
    monkeypatch.setattr(check_module, "TOLERANCE", -1.0)  # as if the exporter had changed every logit
    result = run_cli("export", "--ckpt_path", str(checkpoint), "--output", str(earlier), cwd=tmp_path, check=False)
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith(PREFIX) and "the exported mnist_cnn gives other results than the checkpoint" in line
    assert f"nothing was written to {earlier}" in line
    assert earlier.read_bytes() == b"an earlier export" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_net_the_exporter_cannot_handle_is_one_line_and_writes_nothing(mnist, tmp_path, monkeypatch):
    checkpoint, _ = mnist

    def fails(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::something_new\nmore details")

    monkeypatch.setattr(torch.onnx, "export", fails)
    result = run_cli("export", "--ckpt_path", str(checkpoint), "--output", "x.onnx", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert last_line(result) == (
        f"{PREFIX}the ONNX exporter cannot handle the net mnist_cnn (RuntimeError: Unsupported operator "
        "aten::something_new); nothing written."
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--output", "model.bin"], "--output model.bin: a onnx file's name ends in .onnx"),
        (["--format", "pt2", "--output", "model.onnx"], "--output model.onnx: a pt2 file's name ends in .pt2"),
        (["--output", "missing/model.onnx"], "no folder missing to write it in"),
        (["--check_images", "0"], "--check_images must be at least 1"),
    ],
)
def test_bad_export_options_are_one_line(mnist, tmp_path, args, expected):
    checkpoint, _ = mnist
    result = run_cli("export", "--ckpt_path", str(checkpoint), *args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and last_line(result).startswith(PREFIX) and expected in last_line(result)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_extra_names_the_install(mnist, tmp_path, monkeypatch):
    checkpoint, _ = mnist
    monkeypatch.setattr(export_module, "_importable", lambda name: name != "onnxscript")
    result = run_cli("export", "--ckpt_path", str(checkpoint), cwd=tmp_path, check=False)
    assert last_line(result) == f'{PREFIX}exporting to ONNX needs onnxscript: pip install "lit-cs201[deploy]"'


def test_a_pt2_export_carries_the_same_metadata_and_answers(mnist, tmp_path, capsys, monkeypatch):
    checkpoint, files = mnist
    monkeypatch.chdir(checkpoint.parents[3])
    target = export_module.export(checkpoint, tmp_path / "model.pt2", format="pt2")
    assert "agrees on 24 of 24" in capsys.readouterr().out
    extra = {"lit_cs201.json": ""}
    program = torch.export.load(str(target), extra_files=extra)
    meta = json.loads(extra["lit_cs201.json"])
    assert meta["classes"] == [str(d) for d in range(10)] and meta["input"]["shape"] == [None, 1, 28, 28]
    onnx_model = ExportedModel(export_module.export(checkpoint, tmp_path / "model.onnx"))
    batch, _ = onnx_model.decode(sorted(files.iterdir()))
    with torch.no_grad():
        _, probs = program.module()(torch.from_numpy(batch))
    np.testing.assert_allclose(probs.numpy(), onnx_model.probabilities(batch), atol=1e-5)


def test_an_iris_export_takes_measurements_in_cm(tmp_path, capsys):
    run_cli("fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=30", *QUIET, cwd=tmp_path)
    checkpoint = tmp_path / "runs" / "iris" / "version_0" / "best.ckpt"
    capsys.readouterr()
    result = run_cli("export", "--ckpt_path", str(checkpoint), cwd=tmp_path)
    assert "on the 30 flowers of the test split" in result.stdout and "agrees on 30 of 30" in result.stdout
    model = ExportedModel(checkpoint.with_suffix(".onnx"))
    assert model.metadata["input"] == {"name": "measurements", "dtype": "float32", "layout": "NF", "shape": [None, 4]}
    assert model.metadata["test/acc"] > 0.8
    setosa, virginica = model.predict([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    assert (setosa.predicted, virginica.predicted) == ("setosa", "virginica")
    (tmp_path / "flowers.csv").write_text(
        "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n1e308,3,1,1\n"
    )
    run_cli("predict", "--ckpt_path", str(checkpoint), "--data.predict_path", "flowers.csv", *QUIET, cwd=tmp_path)
    onnx_path = str(checkpoint.with_suffix(".onnx"))
    run_cli("predict", "--ckpt_path", onnx_path, "--data.predict_path", "flowers.csv", cwd=tmp_path)
    ours = read_csv(checkpoint.parent / "predict" / "version_1" / "predictions.csv")
    theirs = read_csv(checkpoint.parent / "predict" / "version_0" / "predictions.csv")
    assert [(r["path"], r["predicted"], r["error"][:40]) for r in ours] == [
        (r["path"], r["predicted"], r["error"][:40]) for r in theirs
    ]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "is not an ONNX model onnxruntime can run"),
        (b"\x08\x07garbage", "is not an ONNX model onnxruntime can run"),
        ("no metadata", "has no lit_cs201 metadata: it was not written by lit-cs201 export"),
        ("other input", "its graph does not take the input its metadata describes"),
        ("external", "its weights are in other files, which are not read"),
    ],
)
def test_a_model_file_is_data_and_refused_in_one_line(mnist, tmp_path, content, expected):
    checkpoint, files = mnist
    path = tmp_path / "model.onnx"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        model = onnx.load(str(export_module.export(checkpoint, tmp_path / "good.onnx")))
        if content == "external":  # weights in a file beside it, which a model must not make the runtime read
            onnx.save(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
        elif content == "no metadata":
            del model.metadata_props[:]
        else:  # metadata that says 32x32 images, for a graph of 28x28 ones
            (entry,) = model.metadata_props
            meta = json.loads(entry.value)
            meta["input"]["shape"] = [None, 1, 32, 32]
            entry.value = json.dumps(meta)
        if content != "external":
            onnx.save(model, str(path))
    result = run_cli("predict", "--ckpt_path", str(path), "--data.predict_path", str(files), cwd=tmp_path, check=False)
    assert result.returncode == 2 and last_line(result).startswith(f"{PREFIX}{path}") and expected in last_line(result)
    assert not (tmp_path / "predict").exists()


def test_a_fifo_as_the_model_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "model.onnx")
    with pytest.raises(UserError, match="cannot read the model .*model.onnx"):
        ExportedModel(tmp_path / "model.onnx")


def test_predict_from_an_export_needs_files_and_takes_no_training_flags(mnist, tmp_path):
    checkpoint, files = mnist
    target = str(export_module.export(checkpoint, tmp_path / "m.onnx"))
    result = run_cli("predict", "--ckpt_path", target, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "an exported model carries no test split" in last_line(result)
    result = run_cli(
        "predict", "--ckpt_path", target, "--data.predict_path", str(files), *QUIET, cwd=tmp_path, check=False
    )
    assert result.returncode == 2 and "--trainer.enable_progress_bar=false: an exported model" in last_line(result)
    shutil.copy(next(files.glob("0_*")), tmp_path / "a.png")
    run_cli("predict", "--ckpt_path", target, "--data.predict_path", "[a.png, a.png]", cwd=tmp_path)
    (row,) = read_csv(tmp_path / "predict" / "version_0" / "predictions.csv")  # the list of jsonargparse's syntax
    assert row["path"] == "a.png"


def _edited(source: Path, path: Path, edit) -> Path:
    model = onnx.load(str(source))
    (entry,) = model.metadata_props
    meta = json.loads(entry.value)
    edit(model, meta)
    entry.value = json.dumps(meta)
    onnx.save(model, str(path))
    return path


def _loop(model, meta) -> None:
    """A node that repeats a subgraph 2**62 times: it would keep a predict busy for ever."""
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info(n, t, []) for n, t in (("i", TensorProto.INT64), ("cond", TensorProto.BOOL))],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )
    model.graph.node.append(helper.make_node("Loop", ["trips", "always"], [], body=body))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda model, meta: meta.update(classes=["a", "b"]), "does not give the probabilities of its 2 classes"),
        (lambda model, meta: meta.pop("invert"), "gives no inversion rule (never, always or light_background)"),
        (_loop, "runs Loop: an operator that repeats as often as the file says"),
    ],
    ids=["fewer-classes", "no-inversion-rule", "loop"],
)
def test_a_model_whose_graph_and_metadata_disagree_is_refused(mnist, tmp_path, edit, expected):
    checkpoint, files = mnist
    path = _edited(export_module.export(checkpoint, tmp_path / "good.onnx"), tmp_path / "model.onnx", edit)
    result = run_cli("predict", "--ckpt_path", str(path), "--data.predict_path", str(files), cwd=tmp_path, check=False)
    assert result.returncode == 2 and expected in last_line(result), result.stderr
    assert not (tmp_path / "predict").exists()


def test_what_predict_from_an_export_cannot_do_is_one_line(mnist, tmp_path):
    checkpoint, files = mnist
    target = str(export_module.export(checkpoint, tmp_path / "m.onnx"))
    (tmp_path / "bad").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "bad" / name).write_bytes(b"not an image")
    result = run_cli("predict", "--ckpt_path", target, "--data.predict_path", "bad", cwd=tmp_path, check=False)
    assert "predict_path ['bad']: none of the 2 files could be read (bad/a.png: not an image" in last_line(result)
    (tmp_path / "predict").write_text("a file where the results would go")
    result = run_cli("predict", "--ckpt_path", target, "--data.predict_path", str(files), cwd=tmp_path, check=False)
    folder = tmp_path / "predict"
    assert last_line(result) == f"{PREFIX}{folder} is a file: predictions go in a folder of that name beside the model."
    result = run_cli("predict", "--ckpt_path", target, "--data.predict_path", cwd=tmp_path, check=False)
    assert last_line(result) == (
        f"{PREFIX}argument --data.predict_path: expected at least one argument (see lit-cs201 predict --help)."
    )
    result = run_cli("test", "--ckpt_path", target, cwd=tmp_path, check=False)
    assert result.returncode == 2 and f"--ckpt_path {target} is an exported model, not a checkpoint" in last_line(
        result
    )


def test_an_export_checks_on_the_files_it_is_given_and_refuses_unreadable_ones(mnist, tmp_path, capsys):
    checkpoint, files = mnist  # run from tmp_path: its data_dir is not there, so the check uses the files given
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not an image")
    os.chdir(tmp_path)
    try:
        with pytest.raises(UserError, match="none of the 1 files could be read"):
            export_module.export(checkpoint, tmp_path / "m.onnx", predict_path="bad")
        export_module.export(checkpoint, tmp_path / "m.onnx", predict_path=str(next(files.glob("0_*"))))
    finally:
        os.chdir(Path(__file__).parent)
    out = capsys.readouterr().out
    assert "on 1 images of --data.predict_path, repeated to 6 inputs, at batch sizes 1, 2, 3" in out
    assert oct((tmp_path / "m.onnx").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "m.onnx"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_an_export_of_best_does_not_pin_best_for_later_commands(tmp_path):
    """``--ckpt_path best`` is remembered for the processes a Lightning run starts; an export starts none, and a later
    command in the same process (the Python API, a notebook) must find the newest run again."""
    from lit_cs201.runs.restore import PINNED_CHECKPOINT_ENV

    run_cli("fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=2", *QUIET, cwd=tmp_path)
    run_cli("export", "--ckpt_path", "best", cwd=tmp_path)
    assert PINNED_CHECKPOINT_ENV not in os.environ


def test_the_summary_of_written_predictions_counts_in_words():
    from lit_cs201.report.predictions import summary

    one = [(0, None, [1], [0.9])]
    assert (
        summary(Path("p.csv"), one, [("a.png", "x")], "files")
        == "Wrote 1 prediction to p.csv; 1 file could not be read"
    )
    rows = [(0, None, [1], [0.9]), (1, None, [0], [0.8]), (2, None, [], [])]
    assert summary(Path("p.csv"), rows, [("a", "x"), ("b", "y")], "rows") == (
        "Wrote 2 predictions to p.csv; 2 rows could not be read; 1 has no finite output (see the error column)"
    )
