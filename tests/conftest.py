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
