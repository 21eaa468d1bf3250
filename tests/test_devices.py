"""lit_cs201.devices: reports what torch sees and what Lightning's "auto" picks.

Assertions compare with torch and Lightning directly, so they hold on CPU-only, CUDA and MPS machines alike.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lit_cs201 import devices
from lit_cs201.devices import DeviceInfo, device_info


@pytest.fixture(scope="module")
def info() -> DeviceInfo:
    return device_info()


def test_reports_what_torch_sees(info: DeviceInfo) -> None:
    assert info.cuda_available == torch.cuda.is_available()
    assert info.mps_available == torch.backends.mps.is_available()
    assert info.torch_version == torch.__version__
    assert info.cpu_threads == torch.get_num_threads() >= 1
    if info.cuda_available:
        assert len(info.cuda_devices) == torch.cuda.device_count()
        for dev in info.cuda_devices:
            assert dev.name == torch.cuda.get_device_name(dev.index)
            assert dev.total_memory_bytes > 0
    else:
        assert info.cuda_devices == ()


def test_auto_accelerator_is_what_a_trainer_uses(info: DeviceInfo, tmp_path) -> None:
    from lightning.pytorch import Trainer

    assert info.resolved_by == "lightning"
    trainer = Trainer(
        accelerator="auto",
        devices="auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    assert info.auto_accelerator == type(trainer.accelerator).name()
    assert info.auto_devices == trainer.num_devices


def test_auto_accelerator_follows_availability(info: DeviceInfo) -> None:
    # Lightning prefers MPS over CUDA; on a machine with neither it is the CPU, one device.
    if info.mps_available and info.auto_accelerator == "mps":
        assert info.auto_devices == 1
    elif info.cuda_available:
        assert info.auto_accelerator == "cuda"
        assert info.auto_devices == torch.cuda.device_count()
    else:
        assert info.auto_accelerator == "cpu"
        assert info.auto_devices == 1


def test_mirror_agrees_with_lightning(info: DeviceInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail, as if a Lightning release had moved the function.
    monkeypatch.setitem(sys.modules, "lightning.pytorch.trainer.connectors.accelerator_connector", None)
    mirrored = device_info()
    assert mirrored.resolved_by == "mirror"
    assert (mirrored.auto_accelerator, mirrored.auto_devices) == (info.auto_accelerator, info.auto_devices)


def test_as_dict_is_json_ready(info: DeviceInfo) -> None:
    data = json.loads(json.dumps(info.as_dict()))
    assert data["cuda_available"] is info.cuda_available
    assert data["auto_accelerator"] == info.auto_accelerator
    assert isinstance(data["cuda_devices"], list)


def test_cli_prints_the_report(info: DeviceInfo, tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lit_cs201.devices"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"CUDA: {torch.cuda.is_available()}" in out
    assert f"MPS: {torch.backends.mps.is_available()}" in out
    assert f"torch uses {info.cpu_threads} threads" in out
    assert f'accelerator="auto" -> {info.auto_accelerator}, devices="auto" -> {info.auto_devices}' in out
    for dev in info.cuda_devices:
        assert dev.name in out


def test_cli_json(info: DeviceInfo, capsys: pytest.CaptureFixture[str]) -> None:
    assert devices.main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == info.as_dict()


def test_cli_rejects_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        devices.main(["--gpu"])
    assert exc.value.code == 2
    assert "--gpu" in capsys.readouterr().err.splitlines()[-1]
