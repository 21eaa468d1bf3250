"""``lit-cs201 serve``: the page in a real browser (Debian's chromium through Playwright), the prediction API, bad
requests, concurrent clients, loopback by default, and a stop on SIGTERM, against a real server process."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from helpers import CONFIGS, run_cli
from lit_cs201.data.mnist import read_idx
from synthetic import write_mnist

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUIET = ["--trainer.enable_progress_bar=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m lit_cs201 serve MODEL`` in its own process, on a free loopback port."""

    def __init__(self, model: Path, *extra: str, cwd: Path) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "lit_cs201", "serve", str(model), "--port", str(self.port), *extra]
        self.process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"serve did not start: {self.process.stderr.read()[-3000:]}")
            time.sleep(0.2)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def upload(self, files: list[tuple[str, bytes]], field: str = "files") -> tuple[int, dict]:
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
            for name, data in files
        ]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def png(array: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """An exported MNIST model (``mnist_cnn``), and test digits as arrays."""
    work = tmp_path_factory.mktemp("serve")
    raw = write_mnist(work / "data", n_train=96, n_test=16)
    args = ["--data.init_args.data_dir=data", "--data.init_args.val_size=16", "--trainer.max_epochs=2", *QUIET]
    run_cli("fit", "--config", str(CONFIGS / "mnist.yaml"), *args, cwd=work)
    checkpoint = work / "runs" / "mnist" / "version_0" / "best.ckpt"
    run_cli("export", "--ckpt_path", str(checkpoint), cwd=work)
    return checkpoint.with_suffix(".onnx"), read_idx(raw / "t10k-images-idx3-ubyte", ndim=3).copy()


@pytest.fixture(scope="module")
def server(digits, tmp_path_factory):
    model, _ = digits
    running = Server(model, "--max_upload_mb", "2", "--max_files", "4", cwd=tmp_path_factory.mktemp("cwd"))
    yield running
    running.stop()


def test_the_api_answers_top_five_per_file_and_describes_the_model(server, digits):
    from lit_cs201.deploy import ExportedModel

    model, images = digits
    status, answer = server.upload([("seven.png", png(images[0])), ("other.png", png(images[1]))])
    assert status == 200
    expected = ExportedModel(model).predict([images[0], images[1]])
    for result, local in zip(answer["results"], expected, strict=True):
        assert result["predicted"] == local.predicted and len(result["top"]) == 5
        assert all(isinstance(name, str) for name, _ in result["top"])
        assert result["probability"] == pytest.approx(local.probability, abs=1e-6)
    assert [r["file"] for r in answer["results"]] == ["seven.png", "other.png"]
    status, info = server.get("/info")
    assert status == 200 and info["kind"] == "sketch" and info["classes"] == [str(d) for d in range(10)]
    assert info["metadata"]["input"]["shape"] == [None, 1, 28, 28]
    assert server.get("/health") == (200, {"status": "ok"})


def _bomb() -> bytes:
    import io

    out = io.BytesIO()
    Image.new("L", (5_000, 5_000)).save(out, format="PNG")  # 25 million pixels in about 25 kB
    return out.getvalue()


@pytest.mark.parametrize(
    "request_, status, message",
    [
        ("not an image", 400, "notes.txt cannot be read as an image (not an image Pillow can identify)"),
        ("empty file", 400, "empty.png is empty: no image was sent"),
        ("empty body", 400, "the body is empty"),
        ("bomb", 400, "pixels to decode, more than the 16,777,216 read at most"),
        ("3 MB", 413, "the upload is larger than 2 MB (--max_upload_mb)"),
        ("too many files", 413, "at most 4 files a request (--max_files)"),
        ("wrong content type", 415, "send the images as multipart/form-data"),
        ("other field", 400, "no images: send one or more fields named 'files'"),
        ("broken multipart", 400, "the multipart body cannot be read"),
    ],
)
def test_a_bad_request_is_a_4xx_json_and_the_next_is_served(server, digits, request_, status, message):
    _, images = digits
    good = png(images[0])
    if request_ == "not an image":
        answer = server.upload([("notes.txt", b"just some text")])
    elif request_ == "empty file":
        answer = server.upload([("empty.png", b"")])
    elif request_ == "empty body":
        answer = server.request("POST", "/predict", b"", {"Content-Type": "multipart/form-data; boundary=x"})
    elif request_ == "bomb":
        answer = server.upload([("bomb.png", _bomb())])
    elif request_ == "3 MB":
        answer = server.upload([("big.png", os.urandom(3 << 20))])
    elif request_ == "too many files":
        answer = server.upload([(f"{i}.png", good) for i in range(5)])
    elif request_ == "wrong content type":
        answer = server.request("POST", "/predict", good, {"Content-Type": "image/png"})
    elif request_ == "other field":
        answer = server.upload([("a.png", good)], field="image")
    else:
        answer = server.request(
            "POST", "/predict", b"--x\r\nbroken", {"Content-Type": "multipart/form-data; boundary=x"}
        )
    assert answer[0] == status and message in answer[1]["error"], answer
    assert server.upload([("a.png", good)])[0] == 200  # and the server goes on


def test_eight_concurrent_clients_get_every_answer(server, digits):
    _, images = digits
    files = [png(image) for image in images[:8]]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: server.upload([(f"{i}.png", files[i % 8])]), range(48)))
    assert [status for status, _ in answers] == [200] * 48
    first = {i: answers[i][1]["results"][0]["predicted"] for i in range(8)}
    assert all(answers[i][1]["results"][0]["predicted"] == first[i % 8] for i in range(48))


def test_it_listens_on_loopback_only_and_stops_on_sigterm(digits, tmp_path):
    model, _ = digits
    running = Server(model, cwd=tmp_path)
    try:
        if Path("/proc/net/tcp").exists():
            listening = [
                line.split()[1]
                for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                if line.split()[3] == "0A"
            ]
            assert f"0100007F:{running.port:04X}" in listening  # 127.0.0.1, not 0.0.0.0
        start = time.monotonic()
        status = running.stop()
        assert time.monotonic() - start < 5
        assert status == 0  # a stop it was asked for
    finally:
        if running.process.poll() is None:
            running.process.kill()
    banner = running.process.stdout.read()
    assert f"on http://127.0.0.1:{running.port}/" in banner


def test_another_interface_is_served_with_a_warning(digits, tmp_path):
    model, _ = digits
    running = Server(model, "--host", "0.0.0.0", cwd=tmp_path)
    running.stop()
    assert "anyone who can reach this machine" in running.process.stderr.read()


def test_a_checkpoint_is_exported_on_start_and_served(digits, tmp_path):
    model, images = digits
    checkpoint = model.with_suffix(".ckpt")
    before = sorted(p.name for p in checkpoint.parent.iterdir())
    running = Server(checkpoint, cwd=checkpoint.parents[3])
    try:
        status, answer = running.upload([("a.png", png(images[0]))])
        assert status == 200 and answer["results"][0]["predicted"] in [str(d) for d in range(10)]
        assert "exported on start" in running.get("/info")[1]["source"]
    finally:
        running.stop()
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == before  # nothing written beside it


def test_an_iris_model_takes_measurements_as_json(tmp_path):
    run_cli("fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=30", *QUIET, cwd=tmp_path)
    run_cli("export", "--ckpt_path", "best", cwd=tmp_path)
    running = Server(tmp_path / "runs" / "iris" / "version_0" / "best.onnx", cwd=tmp_path)
    try:
        assert running.get("/info")[1]["kind"] == "measurements"
        body = json.dumps({"measurements": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode()
        status, answer = running.request("POST", "/predict", body, {"Content-Type": "application/json"})
        assert status == 200 and [r["predicted"] for r in answer["results"]] == ["setosa", "virginica"]
        status, answer = running.request(
            "POST", "/predict", b'{"measurements": [[1, 2]]}', {"Content-Type": "application/json"}
        )
        assert status == 400 and "holds 4 numbers" in answer["error"]
    finally:
        running.stop()


# ---- a real browser ----

needs_browser = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="no chromium here (apt-get install chromium); under CI=true this fails instead",
)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("CI=true and no chromium: .ci/run installs it with apt-get")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def browser_or_skip(request):
    if CHROMIUM is None and os.environ.get("CI") != "true":
        pytest.skip("no chromium here (apt-get install chromium); under CI=true this fails instead")
    return request.getfixturevalue("browser")


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw ``strokes`` (points in 0..1 of the canvas) with the mouse."""
    box = page.locator("#sketch").bounding_box()
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
        page.mouse.up()


@needs_browser
def test_the_page_reads_a_drawn_digit_and_an_uploaded_file(server, digits, browser, tmp_path):
    _, images = digits
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.port}/")
    assert page.locator("#sketch").is_visible() and page.locator("#measure").is_hidden()
    assert "10 classes" in page.locator("#about").inner_text()
    draw(page, [[(0.3, 0.25), (0.7, 0.25), (0.45, 0.8)]])  # a 7
    page.wait_for_function("document.querySelector('#result .top') !== null")
    text = page.locator("#result").inner_text()
    assert text.split()[0] in [str(d) for d in range(10)], text
    assert page.locator("#result .bar").count() == 5
    page.screenshot(path=str(tmp_path / "demo.png"))

    page.click("#clear")
    assert page.locator("#result").inner_text() == ""
    (tmp_path / "digit.png").write_bytes(png(images[3]))
    page.set_input_files("#file", str(tmp_path / "digit.png"))
    page.wait_for_function("document.querySelector('#result .top') !== null")
    assert page.locator("#result").inner_text().split()[0] in [str(d) for d in range(10)]
    assert page.locator("#result .bar").count() == 5
    (tmp_path / "notes.txt").write_text("not an image")
    page.set_input_files("#file", str(tmp_path / "notes.txt"))
    page.wait_for_function("document.querySelector('#result .error') !== null")
    assert "cannot be read as an image" in page.locator("#result").inner_text()
    page.close()


@needs_browser
def test_the_page_drawn_digit_is_framed_as_mnist_frames_digits(server, browser):
    """A small digit drawn in a corner reads as the same digit drawn large in the middle: the page scales its
    bounding box into 20x20 and centres it by mass in 28x28, as MNIST did."""
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.port}/")
    framed = page.evaluate(
        """() => {
            const c = document.getElementById('sketch'), ctx = c.getContext('2d');
            ctx.fillStyle = '#fff'; ctx.fillRect(10, 10, 30, 60);   // a small bar in the top left corner
            const f = frame(c, 28, 28), d = f.getContext('2d').getImageData(0, 0, 28, 28).data;
            let x0 = 28, x1 = -1, y0 = 28, y1 = -1, m = 0, cx = 0, cy = 0;
            for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
                const v = d[(y * 28 + x) * 4];
                if (v > 0) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
                m += v; cx += v * (x + 0.5); cy += v * (y + 0.5);
            }
            return [x1 - x0 + 1, y1 - y0 + 1, cx / m, cy / m];
        }"""
    )
    width, height, cx, cy = framed
    assert height == 20 and 9 <= width <= 11  # the taller side scaled to 20 pixels, the aspect kept
    assert abs(cx - 14) <= 0.5 and abs(cy - 14) <= 0.5  # centred by mass
    page.close()


def test_a_net_the_exporter_cannot_handle_is_served_through_torch(digits, tmp_path, monkeypatch, capsys):
    from lit_cs201.deploy import ExportedModel, export, serve

    model, images = digits
    checkpoint = model.with_suffix(".ckpt")

    def fails(*args, **kwargs):
        raise export._exporter_failed("mnist_cnn", "ONNX", RuntimeError("unsupported operator"))

    monkeypatch.setattr(export, "export", fails)
    served, source = serve.load_model(str(checkpoint), "runs", tmp_path)
    assert "through torch" in source and "serving it through torch instead" in capsys.readouterr().err
    app_answer = serve.predict_images(served, [("a.png", png(images[0]))])
    (local,) = ExportedModel(model).predict([images[0]])
    assert app_answer[0]["predicted"] == local.predicted
    assert app_answer[0]["probability"] == pytest.approx(local.probability, abs=1e-5)


def test_what_serve_cannot_do_is_one_line(digits, tmp_path):
    model, _ = digits
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", str(model), "--port", str(port), cwd=tmp_path, check=False)
    assert result.returncode == 2
    in_use = f"port {port} on 127.0.0.1 is in use: stop what uses it, or give another --port"
    assert result.stderr.strip() == f"lit-cs201: error: {in_use}."
    assert "Serving" not in result.stdout
    for args, expected in (
        (["--max_upload_mb", "nan"], "--max_upload_mb must be a positive number"),
        (["--threads", "-1"], "--threads must be 0 (one a core) or more"),
        (["--host", "192.0.2.1"], "cannot listen on 192.0.2.1:8000"),  # an address of no interface here
    ):
        result = run_cli("serve", str(model), *args, cwd=tmp_path, check=False)
        assert result.returncode == 2 and expected in result.stderr.strip().splitlines()[-1], result.stderr


def test_class_names_are_text_on_the_page(digits, tmp_path, browser_or_skip):
    """A model's class names are data: whatever they hold, the page shows them as text and its script runs."""
    model, images = digits
    hostile = ["<!--<script>", "</script><script>window.owned = 1</script>", "<img src=x onerror=window.owned=1>"]
    hostile += [str(d) for d in range(3, 10)]
    path = tmp_path / "hostile.onnx"
    edited = onnx.load(str(model))
    (entry,) = edited.metadata_props
    meta = json.loads(entry.value)
    meta["classes"] = hostile
    entry.value = json.dumps(meta)
    onnx.save(edited, str(path))
    running = Server(path, cwd=tmp_path)
    try:
        page = browser_or_skip.new_page()
        page.goto(f"http://127.0.0.1:{running.port}/")
        assert "<!--<script>" in page.locator("#about").inner_text()
        assert page.locator("#sketch").is_visible()  # the script ran
        page.set_input_files("#file", files=[{"name": "a.png", "mimeType": "image/png", "buffer": png(images[0])}])
        page.wait_for_function("document.querySelector('#result .top') !== null")
        assert page.evaluate("window.owned") is None
        page.close()
    finally:
        running.stop()


def test_a_stop_by_sigterm_removes_the_temporary_export(digits, tmp_path):
    model, _ = digits
    checkpoint = model.with_suffix(".ckpt")
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    os.environ["TMPDIR"], before = str(env_tmp), os.environ.get("TMPDIR")
    try:
        running = Server(checkpoint, cwd=checkpoint.parents[3])
    finally:
        os.environ.pop("TMPDIR") if before is None else os.environ.__setitem__("TMPDIR", before)
    try:
        assert len(list(env_tmp.glob("lit-cs201-serve-*/model.onnx"))) == 1
    finally:
        assert running.stop() == 0  # stopped whatever failed above: no server outlives its test
    assert list(env_tmp.glob("lit-cs201-serve-*")) == []


def test_a_kept_alive_connection_is_answered_without_nagle_delays(server, digits):
    """Browsers keep connections alive: with Nagle's algorithm on, each answer on one would wait about 40 ms."""
    _, images = digits
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'.encode()
        + png(images[0])
        + f"\r\n--{boundary}--\r\n".encode()
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    took = []
    try:
        for _ in range(12):
            start = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            took.append(time.perf_counter() - start)
    finally:
        connection.close()
    assert sorted(took)[len(took) // 2] < 0.025, took


def _photo_model(path: Path) -> Path:
    """An RGB model of 32x32 photos (random weights), exported as `lit-cs201 export` writes one."""
    import torch

    from lit_cs201.data.augment import build_augment
    from lit_cs201.deploy.export import Exported, write_onnx
    from lit_cs201.models.nets import build_net

    torch.manual_seed(0)
    module = Exported(
        build_net("mlp", 3, (3, 32, 32)).eval(), build_augment("none", [0.5] * 3, [0.25] * 3), "never", (32, 32)
    )
    metadata = {
        "format": 1,
        "classes": ["cat", "dog", "owl"],
        "input": {"name": "images", "dtype": "uint8", "layout": "NCHW", "shape": [None, 3, 32, 32]},
        "invert": "never",
    }
    write_onnx(module.eval(), np.zeros((2, 3, 32, 32), np.uint8), metadata, path, "mlp")
    return path


def test_a_photo_model_gets_the_drop_zone_and_iris_the_form(tmp_path, browser_or_skip):
    photo = Server(_photo_model(tmp_path / "photos.onnx"), cwd=tmp_path)
    try:
        page = browser_or_skip.new_page()
        page.goto(f"http://127.0.0.1:{photo.port}/")
        assert page.locator("#sketch").is_hidden() and page.locator("#drop").is_visible()
        picture = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
        page.set_input_files("#file", files=[{"name": "p.png", "mimeType": "image/png", "buffer": png(picture)}])
        page.wait_for_function("document.querySelector('#result .top') !== null")
        assert page.locator("#result").inner_text().split()[0] in ("cat", "dog", "owl")
        assert page.locator("#result .bar").count() == 3
        page.close()
    finally:
        photo.stop()

    run_cli("fit", "--config", str(CONFIGS / "iris.yaml"), "--trainer.max_epochs=30", *QUIET, cwd=tmp_path)
    run_cli("export", "--ckpt_path", "best", cwd=tmp_path)
    iris = Server(tmp_path / "runs" / "iris" / "version_0" / "best.onnx", cwd=tmp_path)
    try:
        page = browser_or_skip.new_page()
        page.goto(f"http://127.0.0.1:{iris.port}/")
        assert page.locator("#sketch").is_hidden() and page.locator("#drop").is_hidden()
        for field, value in zip(page.locator("#measure input").all(), ("5.1", "3.5", "1.4", "0.2"), strict=True):
            field.fill(value)
        page.click("#measure button")
        page.wait_for_function("document.querySelector('#result .top') !== null")
        assert page.locator("#result").inner_text().split()[0] == "setosa"
        page.close()
    finally:
        iris.stop()
