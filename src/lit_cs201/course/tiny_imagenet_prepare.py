"""Check Tiny ImageNet, extract its zip if needed, and give val/ one folder per class, as loaders of class folders need.

    python scripts/prepare_tiny_imagenet.py DATA_DIR [--download] [--cache]

The command line of `lit_cs201.data.tiny_imagenet_tree.prepare`, whose docstring tells what a run changes and how a
rerun finishes an interrupted one. It imports neither torch nor Lightning unless ``--cache`` asks to decode the images.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from lit_cs201.course.argtypes import ArgumentParser
from lit_cs201.data.tiny_imagenet_tree import ARCHIVE, DIR_NAME, MD5, URL, ZIP_NAME, prepare
from lit_cs201.errors import run_command

PROG = "prepare_tiny_imagenet"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status: 0 ready, 2 refused, 1 the system failed, 130 interrupted."""
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0] + " Safe to rerun.")
    parser.add_argument("data_dir", metavar="DATA_DIR", help=f"the folder that holds {DIR_NAME}/ or {ZIP_NAME}")
    parser.add_argument("--download", action="store_true", help=f"download {ZIP_NAME} if it and the folder are missing")
    parser.add_argument("--url", default=URL, help="where --download fetches the zip (default: %(default)s)")
    parser.add_argument("--md5", default=MD5, help="the md5 the zip must have (default: %(default)s, the official one)")
    parser.add_argument("--cache", action="store_true", help="then decode the images into the training cache now")
    return run_command(PROG, lambda: _run(parser.parse_args(argv)))


def _run(args: argparse.Namespace) -> int:
    try:
        print(prepare(args.data_dir, args.download, replace(ARCHIVE, md5=args.md5.lower(), urls=(args.url,))))
        if args.cache:
            from lit_cs201.data.tiny_imagenet import cache_splits  # imports torch and Lightning: only when asked

            print("\n".join(cache_splits(args.data_dir)))
    except OSError as err:  # a full disk, no permission: each change so far was a rename or in a scratch folder
        print(f"{PROG}: error: {err}. No image was lost; fix this and run again to finish", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted. No image was lost; run again to finish", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
