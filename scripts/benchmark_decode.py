"""Measure image decoding (`lit_cs201.data.decode`) on this machine: images/s for phone photos and small PNGs.

(a) photos:  12-megapixel JPEGs (4000x3000, textured, quality 90) decoded to 224x224, with JPEG draft mode
             (decoding at 1/8 scale before the resize) and without it, on one thread and on all threads;
(b) small:   PNGs of 64x64 decoded at their own size, on one thread and on all threads;
(c) --cache-check FOLDER: for an image folder (train/<class>/, test/<class>/), what telling whether it changed
             since it was cached costs: the cache's fingerprint (one stat per file: size, times, inode) beside the
             fingerprint of size and modification time alone, a content hash of every file, and a fresh decode.

    python scripts/benchmark_decode.py                    # 20 photos, 2000 PNGs
    python scripts/benchmark_decode.py --photos 40 --pngs 5000 --workers 8
    python scripts/mnist_5k.py data/digits --png && python scripts/benchmark_decode.py --cache-check data/digits

The images are written to a temporary folder first and read once before timing, so the figures are decode
speed from the page cache, not disk speed. Other work on the machine lowers them: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from lit_cs201.data import cache, decode


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


def cache_check(root: Path) -> None:
    """(c): best of 3 of each way to tell whether the files of ``root`` changed, after one untimed run."""
    files: list[Path] = []
    labels: list[int] = []
    for split in ("train", "val", "test"):
        for label, folder in enumerate(sorted(p for p in (root / split).glob("*") if p.is_dir())):
            found = decode.find_images(folder)
            files += found
            labels += [label] * len(found)
    shape = decode.to_uint8(files[0]).shape

    def size_and_mtime() -> str:  # the fingerprint before it took inodes and change times
        digest = hashlib.sha256()
        for path, label in zip(files, labels, strict=True):
            info = path.stat()
            digest.update(
                f"{path.relative_to(root).as_posix()}\t{label}\t{info.st_size}\t{info.st_mtime_ns}\n".encode()
            )
        return digest.hexdigest()

    def content_hash() -> str:
        digest = hashlib.blake2b()
        for path in files:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def fresh_decode() -> None:
        with tempfile.TemporaryDirectory() as folder:
            cache.cached_images(files, labels, shape, Path(folder), "all", root)

    ways = {
        "fingerprint: size, modification time": size_and_mtime,
        "fingerprint: + inode, change time (used)": lambda: cache.fingerprint(root, files, labels, shape),
        "content hash (blake2b) of every file": content_hash,
        "fresh decode into a cache": fresh_decode,
    }
    megabytes = sum(p.stat().st_size for p in files) / 2**20
    print(f"{len(files)} images ({megabytes:.1f} MiB) in {root}, load average {os.getloadavg()[0]:.2f}")
    for name, way in ways.items():
        way()  # the page cache, imports
        times = []
        for _ in range(3):
            start = time.perf_counter()
            way()
            times.append(time.perf_counter() - start)
        print(f"{name:<45} {min(times) * 1000:8.1f} ms (best of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=20, help="12-megapixel JPEGs to write and decode")
    parser.add_argument("--pngs", type=int, default=2000, help="64x64 PNGs to write and decode")
    parser.add_argument("--workers", type=int, default=decode.default_workers(), help="threads for 'all threads'")
    parser.add_argument("--cache-check", type=Path, metavar="FOLDER", help="(c) only, on this image folder")
    args = parser.parse_args()
    if args.cache_check is not None:
        cache_check(args.cache_check)
        return
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
