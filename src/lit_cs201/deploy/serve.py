"""``lit-cs201 serve MODEL``: a demo page and a prediction API for an exported model (or a checkpoint, exported on
start), on FastAPI and uvicorn, bound to loopback unless told otherwise.

    browser canvas / upload ──POST /predict (multipart, in memory)──▶ the package's one decoder ──▶ the runtime
        ──▶ top-5 JSON ──▶ the page's #result

An upload is data: its body is read into memory up to ``--max_upload_mb`` (never to disk), at most ``--max_files``
files, each decoded under the decoder's pixel bound; nothing in a request names a file to read. A bad request is
a 4xx JSON ``{"error": "..."}`` and the next one is served.
"""

import contextlib
import errno
import ipaddress
import json
import math
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lit_cs201.report.results import top_classes
from lit_cs201.deploy.runtime import INSTALL, ExportedModel
from lit_cs201.errors import ArgumentParser, UserError, printable

#: Uploads larger than this (all files of a request together) are refused: a phone photo is 2-8 MB.
MAX_UPLOAD_MB = 10
#: Files in one request at most.
MAX_FILES = 16
#: The most pixels an uploaded file may hold (after a JPEG's reduced-size decoding): a 16-megapixel phone photo.
#: Decoding takes up to 16 bytes a pixel, so one upload costs at most about 270 MB, one file at a time.
MAX_UPLOAD_PIXELS = 1 << 24
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RequestError(Exception):
    """A request that cannot be answered: its status and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def page_kind(model: ExportedModel) -> str:
    """What the page offers: ``sketch`` (a canvas) for small greyscale images such as digits, ``photo`` (a file
    picker, a drop zone, the camera) for other images, ``measurements`` (a form) for rows of numbers."""
    if not model.takes_images:
        return "measurements"
    channels, height, width = model.input_shape
    return "sketch" if channels == 1 and max(height, width) <= 64 else "photo"


def multipart_files(content_type: str, body: bytes, max_files: int) -> list[tuple[str, bytes]]:
    """The (file name, bytes) of each part named ``files`` of a multipart/form-data ``body``, held in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise RequestError(415, "send the images as multipart/form-data, one field named 'files' per image")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytearray] = {}

    def begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def field(data: bytes, start: int, end: int) -> None:
        header.setdefault("field", bytearray()).extend(data[start:end])

    def value(data: bytes, start: int, end: int) -> None:
        header.setdefault("value", bytearray()).extend(data[start:end])

    def header_end() -> None:
        name = bytes(header.pop("field", b"")).decode("latin-1").lower()
        parts[-1]["headers"][name] = bytes(header.pop("value", b""))

    def data(chunk: bytes, start: int, end: int) -> None:
        parts[-1]["data"].extend(chunk[start:end])

    ended: list[bool] = []
    callbacks = {
        "on_part_begin": begin, "on_header_field": field, "on_header_value": value, "on_header_end": header_end,
        "on_part_data": data, "on_end": lambda: ended.append(True),
    }  # fmt: skip
    try:
        parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except Exception as err:  # python-multipart's own error types
        raise RequestError(400, f"the multipart body cannot be read ({err})") from None
    if parts and not ended:  # cut short: the last part may be half an image
        raise RequestError(400, "the multipart body cannot be read (it ends before its closing boundary)")
    files = []
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get("content-disposition", b""))
        if disposition.get(b"name") == b"files":
            name = disposition.get(b"filename", b"").decode("utf-8", "replace") or f"file {len(files) + 1}"
            files.append((printable(name), bytes(part["data"])))
        if len(files) > max_files:
            raise RequestError(413, f"at most {max_files} files a request (--max_files)")
    if not files:
        raise RequestError(400, "no images: send one or more fields named 'files', each an image file")
    return files


def predict_images(model: ExportedModel, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The top classes of each uploaded image, or why it cannot be read; a `RequestError` when none can."""
    empty = [name for name, data in files if not data]
    if len(empty) == len(files):
        raise RequestError(400, f"{empty[0]} is empty: no image was sent")
    batch, errors = model.decode([data for _, data in files], workers=1, max_pixels=MAX_UPLOAD_PIXELS)
    if len(errors) == len(files):
        name, reason = files[0][0], errors[0]
        raise RequestError(400, f"{name} cannot be read as an image ({reason})")
    rows = iter(model.probabilities(batch))
    results = []
    for i, (name, _) in enumerate(files):
        if i in errors:
            results.append({"file": name, "error": f"cannot be read as an image ({errors[i]})"})
            continue
        results.append(_ranked(name, next(rows), model.classes))
    return results


def predict_measurements(model: ExportedModel, rows: Any) -> list[dict[str, Any]]:
    """The top classes of each row of measurements (JSON ``{"measurements": [[...], ...]}``)."""
    features = model.input_shape[0]
    if not (isinstance(rows, list) and 0 < len(rows) <= 1000):
        raise RequestError(400, f"send {{'measurements': [[{features} numbers], ...]}}, 1 to 1000 rows")
    if not all(isinstance(r, list) and len(r) == features for r in rows):
        raise RequestError(400, f"each row of 'measurements' holds {features} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for r in rows for v in r):
        raise RequestError(400, "measurements are numbers")
    try:
        names, batch, errors = model.measurements(rows)
    except UserError as err:
        raise RequestError(400, " ".join(str(err).split())) from None
    if errors:
        raise RequestError(400, f"row {min(errors)}: {errors[min(errors)]}")
    return [_ranked(name, probs, model.classes) for name, probs in zip(names, model.probabilities(batch), strict=True)]


def _ranked(name: str, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    if not np.isfinite(probs).all():
        return {"file": name, "error": "the model's probabilities are not finite numbers for this input"}
    top = top_classes(probs, classes)
    return {"file": name, "predicted": top[0][0], "probability": top[0][1], "top": [list(t) for t in top]}


def create_app(model: ExportedModel, source: str, max_upload_mb: float = MAX_UPLOAD_MB, max_files: int = MAX_FILES):
    """The FastAPI app: ``GET /`` the page, ``GET /info``, ``GET /health``, ``POST /predict``. (This module has no
    ``from __future__ import annotations``: FastAPI reads the handlers' annotations as classes.)"""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from python_multipart.multipart import parse_options_header
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    limit = int(max_upload_mb * 2**20)
    info = {
        "kind": page_kind(model),
        "classes": model.classes,
        "test_acc": model.metadata.get("test/acc"),
        "test_samples": model.metadata.get("test_samples"),
        "net": model.metadata.get("net"),
        "input": model.metadata["input"],
        "source": source,
        "max_upload_mb": max_upload_mb,
        "max_files": max_files,
        "features": model.metadata.get("features"),
    }
    page = resources.files("lit_cs201.deploy").joinpath("page.html").read_text(encoding="utf-8")
    # Class names are data: in a script, "<" could end it ("</script>") or change how HTML reads it ("<!--").
    script = json.dumps(info).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = page.replace("/*INFO*/null", script)
    app = FastAPI(title="lit-cs201", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/info")
    def get_info() -> dict[str, Any]:
        return {**info, "metadata": model.metadata}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # Requests decode and predict at most one a core at once: memory stays bounded (one file at a time each,
    # `MAX_UPLOAD_PIXELS`) however many clients send, and the cores are shared rather than oversubscribed.
    working = threading.BoundedSemaphore(os.cpu_count() or 1)

    def answer(content_type: str, body: bytes) -> list[dict[str, Any]]:
        with working:
            if not model.takes_images:
                if parse_options_header(content_type)[0] != b"application/json":
                    raise RequestError(415, "send JSON: {'measurements': [[4 numbers], ...]}")
                try:
                    rows = json.loads(body).get("measurements")
                except (ValueError, AttributeError, RecursionError):
                    raise RequestError(400, "the body is not a JSON object") from None
                return predict_measurements(model, rows)
            if not body:
                raise RequestError(400, "the body is empty: send one or more image files as 'files'")
            return predict_images(model, multipart_files(content_type, body, max_files))

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            body = await _body(request, limit, max_upload_mb)
            results = await run_in_threadpool(answer, request.headers.get("content-type", ""), body)
        except RequestError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except ClientDisconnect:  # the client went away mid-upload: no one to answer
            return JSONResponse({"error": "the client disconnected"}, status_code=400)
        except UserError as err:  # the model itself failed on this input (a hostile .onnx): the server goes on
            return JSONResponse({"error": " ".join(str(err).split())}, status_code=422)
        return JSONResponse({"results": results})

    return app


async def _body(request: Any, limit: int, max_upload_mb: float) -> bytes:
    """The request's body, read into memory, refused as soon as it passes ``limit`` bytes."""
    too_large = RequestError(413, f"the upload is larger than {max_upload_mb:g} MB (--max_upload_mb)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large
    return bytes(body)


class CheckpointModel(ExportedModel):
    """A checkpoint of images served through torch, for a net the ONNX exporter cannot handle: the runtime's
    decoding and interface, the package's own torch path (`lit_cs201.predict`'s) for the probabilities."""

    def __init__(self, checkpoint: Path) -> None:  # no onnxruntime session: nothing of the parent's set-up
        from lit_cs201.deploy.from_checkpoint import load

        self.path = checkpoint
        self.classifier, self.datamodule = load(checkpoint)
        if not hasattr(self.datamodule, "decode_for_predict"):
            raise UserError(f"{printable(checkpoint)}: only checkpoints of images are served through torch")
        self.metadata = {
            "classes": list(self.classifier.class_names),
            "input": {
                "name": "images",
                "dtype": "uint8",
                "layout": "NCHW",
                "shape": [None, *self.datamodule.image_shape],
            },
            "invert": self.datamodule.inversion,
            "resize": self.datamodule.resize,
            "net": self.classifier.hparams.net,
        }

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from lit_cs201.data.inputs import apply_inversion

        with torch.no_grad():
            x = self.datamodule.eval_augment(torch.from_numpy(apply_inversion(batch.copy(), self.metadata["invert"])))
            return self.classifier(x).float().softmax(dim=-1).numpy()


def load_model(spec: str, runs_dir: str, workdir: Path, threads: int = 0) -> tuple[ExportedModel, str]:
    """The model ``spec`` names, and how it is served: an ``.onnx`` as it is; a checkpoint (or best/last) exported
    into ``workdir`` (a temporary folder, removed when the server stops) first, with the export's check, or
    through torch where the exporter cannot handle its net."""
    if spec.lower().endswith(".onnx"):
        return ExportedModel(spec, threads), f"{spec} (onnxruntime)"
    from lit_cs201.deploy.export import ExporterError, export
    from lit_cs201.runs.restore import resolve_checkpoint

    checkpoint = resolve_checkpoint(spec, runs_dir, pin=False)
    print(f"Exporting {printable(checkpoint)} to ONNX to serve it ...", file=sys.stderr)
    try:
        target = export(checkpoint, workdir / "model.onnx", check_images=64)
    except ExporterError as err:
        print(f"{err}: serving it through torch instead", file=sys.stderr)
        return CheckpointModel(checkpoint), f"{checkpoint} (through torch: the ONNX exporter cannot handle its net)"
    return ExportedModel(target, threads), f"{checkpoint} (exported on start, onnxruntime)"


def main(args: list[str]) -> int:
    """``lit-cs201 serve ARGS``."""
    parser = ArgumentParser(
        prog="lit-cs201 serve",
        description="Serve a model: a page to draw or drop images on, and POST /predict. Stop with Ctrl-C.",
        allow_abbrev=False,
    )
    parser.add_argument("model", help="an exported .onnx, a checkpoint, or best/last for the newest run's checkpoint")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_upload_mb", type=float, default=MAX_UPLOAD_MB, help="largest request body, in MB")
    parser.add_argument("--max_files", type=int, default=MAX_FILES, help="most files in one request")
    parser.add_argument("--runs_dir", default="runs", help="where best/last are looked for (default: runs)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads each prediction computes with (default 1: concurrent requests share the cores; 0: one per core)",
    )
    options = parser.parse_args(args)
    if not 0 <= options.port <= 65535:
        raise UserError(f"--port must be 0..65535, got {options.port}")
    if not (math.isfinite(options.max_upload_mb) and options.max_upload_mb > 0) or options.max_files < 1:
        raise UserError("--max_upload_mb must be a positive number and --max_files at least 1")
    if options.threads < 0:
        raise UserError(f"--threads must be 0 (one a core) or more, got {options.threads}")
    try:
        import uvicorn
    except ImportError:
        raise UserError(f"serving needs fastapi and uvicorn: {INSTALL}") from None
    with tempfile.TemporaryDirectory(prefix="lit-cs201-serve-") as workdir:
        model, source = load_model(options.model, options.runs_dir, Path(workdir), options.threads)
        app = create_app(model, source, options.max_upload_mb, options.max_files)
        listening = _listen(options.host, options.port)
        if options.host not in LOOPBACK:
            print(
                f"warning: listening on {options.host}: anyone who can reach this machine on port {options.port} "
                "can use the model (the default, 127.0.0.1, is this machine only)",
                file=sys.stderr,
            )
        host, port = listening.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"Serving {printable(source)} on http://{shown}:{port}/ (Ctrl-C stops it)", flush=True)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3)
        _stoppable_server(config).run(
            sockets=[listening]
        )  # returns on Ctrl-C or SIGTERM, after open requests (at most 3 s)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``, or one line saying why not (before anything says it serves)."""
    try:
        try:  # an address as it is; a name (localhost) is looked up
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        except ValueError:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off only on sockets that say they are TCP,
        # and with it on, a kept-alive connection waits 40 ms for each answer.
        listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind((host, port))
            listening.listen(2048)
        except OSError:
            listening.close()
            raise
        return listening
    except socket.gaierror as err:
        raise UserError(f"--host {host}: no such address here ({err.strerror})") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use: stop what uses it, or give another --port") from None
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror})") from None


def _stoppable_server(config: Any) -> Any:
    """A uvicorn server for ``config`` whose signals only ask it to stop (uvicorn is imported only to serve)."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a signal only asks it to stop: uvicorn raises the signal again once stopped, which
        would end the process before the temporary export is removed."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)
