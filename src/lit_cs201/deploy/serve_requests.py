"""What a request to ``lit-cs201 serve``'s ``POST /predict`` holds, read as data, and the answer to it.

    body (bounded, in memory) ──multipart_files──▶ (file name, bytes) ──predict_images──▶ top classes per file
    JSON {"measurements": [...]} ──predict_measurements──▶ top classes per row

Nothing in a request names a file to read; each file is decoded under `MAX_UPLOAD_PIXELS`. What cannot be answered
is a `RequestError`: its HTTP status and one line for the client (`lit_cs201.deploy.serve` sends it as JSON).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lit_cs201.deploy.runtime import ExportedModel
from lit_cs201.errors import UserError, printable
from lit_cs201.report.results import top_classes

#: The most pixels an uploaded file may hold (after a JPEG's reduced-size decoding): a 16-megapixel phone photo.
#: Decoding takes up to 16 bytes a pixel, so one upload costs at most about 270 MB, one file at a time.
MAX_UPLOAD_PIXELS = 1 << 24


class RequestError(Exception):
    """A request that cannot be answered: its status and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


async def read_body(request: Any, limit: int, max_upload_mb: float) -> bytes:
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
