"""Test-suite wide guards: no network, no hub downloads, no writes outside temp folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

NETGUARD = Path(__file__).parent / "netguard"

# In this process...
sys.path.insert(0, str(NETGUARD))
from lit_cs201_netguard import install  # noqa: E402

install()

# ...and in every Python subprocess a test starts (the real CLI runs in subprocesses): sitecustomize.py.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("PYTHONUNBUFFERED", "1")
# The tests train ResNets on images of a dozen pixels, whose last feature maps are 1x1. On CPUs with AMX, oneDNN's
# bfloat16 kernels then give a NaN weight gradient now and then (the image-folder ResNet-18 fit: 2 of 15 and 4 of
# 25 runs; with AMX turned off, 0 of 20; in float32, 0 of 15): tests that train in bf16-mixed, the precision such
# CPUs get by default, failed at random. AVX512-BF16 computes the same bfloat16 without those kernels.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
