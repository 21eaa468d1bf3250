"""Prepare Tiny ImageNet in DATA_DIR (the datamodule's data_dir): check, extract, one val/ folder per class.

    python scripts/prepare_tiny_imagenet.py DATA_DIR [--download] [--cache]

The command of `lit_cs201.course.tiny_imagenet_prepare` (also ``python -m lit_cs201.course.tiny_imagenet_prepare``);
see docs/tiny_imagenet.md and ``--help``.
"""

import sys

from lit_cs201.course.tiny_imagenet_prepare import main

if __name__ == "__main__":
    sys.exit(main())
