"""Measure image decoding (`lit_cs201.data.decode`) on this machine: images/s for phone photos and small PNGs.

(a) photos:  12-megapixel JPEGs (4000x3000, textured, quality 90) decoded to 224x224, with JPEG draft mode
             (decoding at 1/8 scale before the resize) and without it, on one thread and on all threads;
(b) small:   PNGs of 64x64 decoded at their own size, on one thread and on all threads.

    python scripts/benchmark_decode.py                    # 20 photos, 2000 PNGs
    python scripts/benchmark_decode.py --photos 40 --pngs 5000 --workers 8

The images are written to a temporary folder first and read once before timing, so the figures are decode
speed from the page cache, not disk speed. Other work on the machine lowers them: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from lit_cs201.data import decode


def write_photos(folder: Path, count: int) -> list[Path]:
    """``count`` 4000x3000 JPEGs with smooth gradients and noise, about the size of phone photos (several MB)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    files = []
    for i in range(count):
        base = np.stack([x / 16 + 40 * i, y / 12, (x + y) / 28], axis=-1) % 256
        noise = rng.normal(0, 24, (3000, 4000, 1)).astype(np.float32)
        path = folder / f"photo_{i}.jpg"
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
        files.append(path)
    return files


def write_pngs(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(1)
    files = []
    for i in range(count):
        path = folder / f"small_{i}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def images_per_second(files: list[Path], shape: tuple[int, int, int], resize: bool, workers: int) -> float:
    start = time.perf_counter()
    count = sum(len(chunk) for chunk, bad in decode.decode_images(files, shape, resize=resize, workers=workers))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=20, help="12-megapixel JPEGs to write and decode")
    parser.add_argument("--pngs", type=int, default=2000, help="64x64 PNGs to write and decode")
    parser.add_argument("--workers", type=int, default=decode.default_workers(), help="threads for 'all threads'")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {args.workers} threads for 'all threads', load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        photos, pngs = write_photos(Path(tmp), args.photos), write_pngs(Path(tmp), args.pngs)
        megabytes = sum(p.stat().st_size for p in photos) / len(photos) / 2**20
        for path in photos + pngs:
            path.read_bytes()  # into the page cache: measure decoding, not the disk
        rows = []
        for workers in (1, args.workers):
            rows.append((f"12 MP JPEG ({megabytes:.1f} MB) -> 224x224, draft", workers, photos, True, False))
            rows.append(("12 MP JPEG -> 224x224, no draft", workers, photos, True, True))
            rows.append(("64x64 PNG, own size", workers, pngs, False, False))
        for label, workers, files, resize, full in rows:
            shape = (3, 224, 224) if files is photos else (3, 64, 64)
            # full: JPEGs decoded at full size, as if the format had no draft mode
            with mock.patch.object(JpegImageFile, "draft", lambda self, mode, size: None) if full else nullcontext():
                rate = images_per_second(files, shape, resize, workers)
            print(f"{label:<45} {workers:>2} thread(s): {rate:8.1f} images/s")


if __name__ == "__main__":
    main()
