"""(f) deploy: what an exported model costs against the checkpoint it came from, on this machine, in one run.

- ms/image of the same computation (uint8 in; /255, mean/std and the net; probabilities out) in torch eager and in
  onnxruntime, at batch 1 and 64, for ``mnist_cnn`` (28 px), the CIFAR ResNet-9 (32 px) and ResNet18 at 224 px
  (random weights: the time does not depend on their values);
- start to first prediction of ``lit-cs201 predict`` on one image, from the ``.onnx`` against from the ``.ckpt``
  (fresh processes, as a user runs them; the median of ``--repeats``);
- ``lit-cs201 serve`` of the ``.onnx`` with 8 concurrent loopback clients, one 28 px image a request: requests/s
  and p50/p95 latency, against the runtime's in-process throughput on the same images, one image a call.

    python scripts/benchmark.py --only deploy
    python scripts/benchmark_deploy.py              # the same part alone
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lit_cs201.data.augment import build_augment
from lit_cs201.deploy import ExportedModel
from lit_cs201.deploy.export import Exported, write_onnx
from lit_cs201.models.nets import build_net

ROOT = Path(__file__).resolve().parents[1]
#: (name, net, input shape, stem) of each net timed.
NETS = (
    ("mnist_cnn 28 px", "mnist_cnn", (1, 28, 28), {}),
    ("resnet9 32 px (CIFAR)", "resnet9", (3, 32, 32), {}),
    ("resnet18 224 px", "resnet18", (3, 224, 224), {}),
)
BATCHES = (1, 64)


def _ms_per_image(run, batch: np.ndarray, seconds: float) -> float:
    """The best ms/image of ``run(batch)`` over repeats filling about ``seconds`` (after two untimed calls)."""
    run(batch)
    run(batch)
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        start = time.perf_counter()
        run(batch)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 1000 * best / len(batch)


def _export_random(net: str, shape: tuple[int, ...], path: Path, **kwargs) -> Exported:
    """``net`` with random weights, exported as `lit_cs201.deploy.export` exports: normalisation inside."""
    module = Exported(
        build_net(net, 10, shape, **kwargs).eval(),
        build_augment("none", mean=[0.5] * shape[0], std=[0.25] * shape[0]),
        "never",
        shape[1:],
    ).eval()
    metadata = {
        "format": 1,
        "classes": [str(i) for i in range(10)],
        "input": {"name": "images", "dtype": "uint8", "layout": "NCHW", "shape": [None, *shape]},
        "invert": "never",
    }
    write_onnx(module, np.zeros((2, *shape), np.uint8), metadata, path, net)
    return module


def bench_runtime(seconds: float = 3.0) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, net, shape, kwargs in NETS:
            path = Path(tmp) / f"{net}.onnx"
            module = _export_random(net, shape, path, **kwargs)
            model = ExportedModel(path)

            def eager(batch: np.ndarray, module=module) -> None:
                with torch.no_grad():
                    module(torch.from_numpy(batch))

            for size in BATCHES:
                batch = np.random.default_rng(0).integers(0, 256, (size, *shape), dtype=np.uint8)
                torch_ms = _ms_per_image(eager, batch, seconds)
                ort_ms = _ms_per_image(model.probabilities, batch, seconds)
                rows.append(
                    {"net": label, "batch": size, "torch_ms": torch_ms, "onnxruntime_ms": ort_ms,
                     "torch_over_onnxruntime": torch_ms / ort_ms}
                )  # fmt: skip
                print(
                    f"  {label:24s} batch {size:3d}: torch {torch_ms:8.3f} ms/image   onnxruntime {ort_ms:8.3f} "
                    f"ms/image   torch/onnxruntime {torch_ms / ort_ms:5.2f}x",
                    flush=True,
                )
    return rows


def bench_start(repeats: int = 3) -> dict:
    """Seconds from starting ``lit-cs201 predict`` on one image to its exit, from the checkpoint and the export."""
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic import write_mnist

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_mnist(work / "data", n_train=64, n_test=16)
        quiet = ["--trainer.enable_progress_bar=false"]
        fit = ["fit", "--config", str(ROOT / "configs" / "mnist.yaml"), "--data.init_args.data_dir=data"]
        fit += ["--data.init_args.val_size=16", "--trainer.max_epochs=1", *quiet]
        _run(["lit-cs201", *fit], work)
        checkpoint = work / "runs" / "mnist" / "version_0" / "best.ckpt"
        _run(["lit-cs201", "export", "--ckpt_path", str(checkpoint)], work)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(work / "digit.png")
        times: dict[str, list[float]] = {"ckpt": [], "onnx": []}
        for _ in range(repeats):  # interleaved: a slower moment of the machine costs both alike
            for kind, extra in (("ckpt", quiet), ("onnx", [])):
                model = checkpoint.with_suffix(f".{kind}")
                start = time.perf_counter()
                _run(
                    ["lit-cs201", "predict", "--ckpt_path", str(model), "--data.predict_path", "digit.png", *extra],
                    work,
                )
                times[kind].append(time.perf_counter() - start)
        digits = [_png(image) for image in np.random.default_rng(0).integers(0, 256, (32, 28, 28), dtype=np.uint8)]
        serve = {"mnist_cnn": bench_serve(checkpoint.with_suffix(".onnx"), digits)}
        resnet = work / "resnet18.onnx"  # the net of configs/image_folder_digits.yaml: more work per request
        _export_random("resnet18", (1, 28, 28), resnet, stem="cifar")
        serve["resnet18"] = bench_serve(resnet, digits, requests=200)
    ckpt, onnx = statistics.median(times["ckpt"]), statistics.median(times["onnx"])
    print(
        f"  predict on one image: from the .ckpt {ckpt:.2f} s, from the .onnx {onnx:.2f} s: {ckpt / onnx:.1f}x sooner"
    )
    return {"ckpt_s": ckpt, "onnx_s": onnx, "ckpt_over_onnx": ckpt / onnx, "runs": times, "serve": serve}


def _png(array: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def bench_serve(model_path: Path, images: list[bytes], requests: int = 400, clients: int = 8, extra=()) -> dict:
    """``lit-cs201 serve`` with ``clients`` concurrent loopback clients, one image a request, against the runtime's
    in-process throughput on the same images, one image a call (the work of one request: decode, run, rank)."""
    import http.client
    import socket
    import threading
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    in_process = 0.0
    for threads in (0, 1):  # the runtime at its best: one thread a core, or one (onnxruntime's spinning threads
        model = ExportedModel(model_path, threads)  # can cost a small model more than they give)
        for image in images[:8]:  # warm up
            model.predict([image])
        for _ in range(3):  # the best of three: a slower moment of the machine is not the runtime's
            start = time.perf_counter()
            for i in range(requests):
                model.predict([images[i % len(images)]])
            in_process = max(in_process, requests / (time.perf_counter() - start))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = ["lit-cs201", "serve", str(model_path), "--port", str(port), *extra]
    server = subprocess.Popen(command, stdout=subprocess.PIPE)
    boundary = uuid.uuid4().hex
    bodies = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.png"\r\n\r\n'.encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
        for i, image in enumerate(images)
    ]
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    local = threading.local()  # one kept-alive connection a client, as a browser keeps one

    def post(i: int) -> tuple[int, float]:
        began = time.perf_counter()
        if getattr(local, "connection", None) is None:
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            local.connection.request("POST", "/predict", bodies[i % len(bodies)], headers)
            response = local.connection.getresponse()
            response.read()
            status = response.status
        except OSError:
            local.connection.close()
            local.connection = None
            raise
        return status, time.perf_counter() - began

    try:
        for _ in range(600):  # until it answers
            try:
                post(0)
                break
            except OSError:
                time.sleep(0.1)
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, range(clients * 2)))  # warm up
            start = time.perf_counter()
            answers = list(pool.map(post, range(requests)))
            served = requests / (time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = sorted(seconds for _, seconds in answers)
    failed = sum(status != 200 for status, _ in answers)
    p50, p95 = 1000 * latencies[len(latencies) // 2], 1000 * latencies[int(len(latencies) * 0.95)]
    print(
        f"  serve {model_path.stem}, {clients} clients, {requests} requests of one image: {served:.1f} requests/s "
        f"(p50 {p50:.1f} ms, p95 {p95:.1f} ms, {failed} failed); the runtime in-process: {in_process:.1f} images/s; "
        f"serve / in-process {served / in_process:.2f}x",
        flush=True,
    )
    return {"requests_per_s": served, "p50_ms": p50, "p95_ms": p95, "failed": failed,
            "in_process_per_s": in_process, "serve_over_in_process": served / in_process}  # fmt: skip


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def bench_deploy(repeats: int = 3) -> dict:
    print(
        f"(f) deploy: torch eager against onnxruntime (torch threads: {torch.get_num_threads()}), and predict's start"
    )
    return {"runtime": bench_runtime(), "start": bench_start(repeats)}


if __name__ == "__main__":
    bench_deploy()
