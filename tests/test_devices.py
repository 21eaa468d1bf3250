"""lit_cs201.course.devices: reports what torch sees and what Lightning's "auto" picks; lit_cs201.models.precision:
the precision a fit trains in when its config gives none.

Assertions compare with torch and Lightning directly, so they hold on CPU-only, CUDA and MPS machines alike.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lit_cs201.course import devices
from lit_cs201.course.devices import DeviceInfo, device_info
from lit_cs201.errors import UserError
from lit_cs201.models import precision


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
        [sys.executable, "-m", "lit_cs201.course.devices"], capture_output=True, text=True, timeout=120, cwd=tmp_path
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


def test_resolve_device_picks_cuda_then_mps_then_cpu_and_refuses_others(monkeypatch: pytest.MonkeyPatch) -> None:
    assert devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="unknown device 'nonsense'"):
        devices.resolve_device("nonsense")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="device 'cuda:1' requested but CUDA is not available"):
        devices.resolve_device("cuda:1")
    with pytest.raises(UserError, match="device 'mps' requested but MPS is not available"):
        devices.resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("cuda")


def test_import_leaves_torch_unloaded() -> None:
    code = "import sys, lit_cs201.course.devices; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_cli_rejects_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert devices.main(["--gpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m lit_cs201.course.devices: error: ") and err.count("\n") == 1
    assert "--gpu" in err


# -- the precision a fit trains in when its config gives none --------------------------------------------------------

CPU_FEATURES = {"none": {}, "AVX512-BF16": {"AVX512-BF16": True}, "AMX": {"AMX": True, "AVX512-BF16": True}}


@pytest.mark.parametrize(
    "machine, expected",
    [
        ("CPU without native bfloat16 (most laptops)", "32-true"),
        ("CPU with AVX512-BF16", "bf16-mixed"),
        ("CPU with AMX", "bf16-mixed"),
        ("CUDA GPU with bfloat16", "bf16-mixed"),
        ("CUDA GPU without bfloat16", "16-mixed"),
        ("Apple MPS", "32-true"),
    ],
)
def test_each_kind_of_machine_trains_in_its_native_precision(monkeypatch, machine, expected):
    features = next((f for name, f in CPU_FEATURES.items() if name in machine), {})
    monkeypatch.setattr(precision, "_cpu_bf16_features", lambda: {"AMX": False, "AVX512-BF16": False, **features})
    monkeypatch.setattr(precision, "_cuda_bf16", lambda: "with bfloat16" in machine)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "a GPU")
    accelerator = "cuda" if "CUDA" in machine else "mps" if "MPS" in machine else "cpu"
    chosen, why = precision.native_precision(accelerator)
    assert chosen == expected and why


def test_a_torch_that_cannot_tell_the_cpus_features_trains_in_float32(monkeypatch):
    """torch.cpu.get_capabilities is recent: without it, float32, which is never wrong, only slower on some CPUs."""
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    assert precision._cpu_bf16_features() == {"AMX": False, "AVX512-BF16": False}
    assert precision.native_precision("cpu")[0] == "32-true"


@pytest.mark.parametrize("native", [False, True], ids=["CPU without bf16", "CPU with bf16"])
def test_a_fit_without_a_precision_records_the_machines_and_an_explicit_one_wins(native, tmp_path, monkeypatch, capsys):
    import yaml

    from lit_cs201.cli.lightning_cli import main

    monkeypatch.setattr(precision, "_cpu_bf16_features", lambda: {"AVX512-BF16": native})
    monkeypatch.chdir(tmp_path)
    quick = ["--data", "IrisDataModule", "--trainer.max_epochs=1", "--trainer.accelerator=cpu"]
    assert main(["fit", *quick, "--trainer.enable_progress_bar=false"]) == 0
    expected = "bf16-mixed" if native else "32-true"
    config = yaml.safe_load((tmp_path / "runs/default/version_0/config.yaml").read_text())
    assert config["trainer"]["precision"] == expected
    assert f"Precision: {expected} (this CPU" in capsys.readouterr().out

    chosen = "32-true" if native else "bf16-mixed"
    assert main(["fit", *quick, f"--trainer.precision={chosen}", "--trainer.enable_progress_bar=false"]) == 0
    config = yaml.safe_load((tmp_path / "runs/default/version_1/config.yaml").read_text())
    assert config["trainer"]["precision"] == chosen
    assert "Precision:" not in capsys.readouterr().out
