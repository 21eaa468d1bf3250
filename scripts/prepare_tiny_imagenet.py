"""Prepare Tiny ImageNet in ROOT (the datamodule's data_dir): verify, extract, one val/ folder per class.

    python scripts/prepare_tiny_imagenet.py ROOT [--download]

The same as ``python -m lit_cs201.data.tiny_imagenet_prepare``; see docs/tiny_imagenet.md and ``--help``.
"""

import sys

from lit_cs201.data.tiny_imagenet_prepare import main

if __name__ == "__main__":
    sys.exit(main(prog="prepare_tiny_imagenet.py"))
