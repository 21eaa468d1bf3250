"""``lit-cs201 serve MODEL``: a demo page and a prediction API for an exported model (or a checkpoint, exported on
start), on FastAPI and uvicorn, bound to loopback unless told otherwise.

    browser canvas / upload ──POST /predict (multipart, in memory)──▶ the package's one decoder ──▶ the runtime
        ──▶ top-5 JSON ──▶ the page's #result

An upload is data (`lit_cs201.deploy.serve_requests` reads it): its body is read into memory up to
``--max_upload_mb`` (never to disk), at most ``--max_files`` files, each decoded under the decoder's pixel bound;
nothing in a request names a file to read. A bad request is a 4xx JSON ``{"error": "..."}`` and the next one is
served.
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

from lit_cs201.deploy.runtime import INSTALL, ExportedModel
from lit_cs201.deploy.serve_requests import (
    RequestError,
    multipart_files,
    predict_images,
    predict_measurements,
    read_body,
)
from lit_cs201.errors import ArgumentParser, UserError, printable

#: Uploads larger than this (all files of a request together) are refused: a phone photo is 2-8 MB.
MAX_UPLOAD_MB = 10
#: Files in one request at most.
MAX_FILES = 16
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def page_kind(model: ExportedModel) -> str:
    """What the page offers: ``sketch`` (a canvas) for small greyscale images such as digits, ``photo`` (a file
    picker, a drop zone, the camera) for other images, ``measurements`` (a form) for rows of numbers."""
    if not model.takes_images:
        return "measurements"
    channels, height, width = model.input_shape
    return "sketch" if channels == 1 and max(height, width) <= 64 else "photo"


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
    # `serve_requests.MAX_UPLOAD_PIXELS`) however many clients send, and the cores are shared, not oversubscribed.
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
            body = await read_body(request, limit, max_upload_mb)
            results = await run_in_threadpool(answer, request.headers.get("content-type", ""), body)
        except RequestError as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except ClientDisconnect:  # the client went away mid-upload: no one to answer
            return JSONResponse({"error": "the client disconnected"}, status_code=400)
        except UserError as err:  # the model itself failed on this input (a hostile .onnx): the server goes on
            return JSONResponse({"error": " ".join(str(err).split())}, status_code=422)
        return JSONResponse({"results": results})

    return app


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
