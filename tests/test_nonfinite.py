"""A diverging run stops at the first non-finite loss, says where, and never saves the diverged model."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from helpers import CONFIGS, run_cli, scalars
from lit_cs201.data import IrisDataModule
from lit_cs201.errors import NonFiniteLossError
from lit_cs201.models import Classifier
from lit_cs201.runs.checkpoints import best_checkpoint, last_checkpoint

# Plain SGD whose learning rate grows tenfold every epoch: it trains, then explodes a few epochs in.
EXPLODING = [
    "--model.init_args.optimizer=" + json.dumps({"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}),
    "--model.init_args.lr_scheduler="
    + json.dumps({"class_path": "torch.optim.lr_scheduler.ExponentialLR", "init_args": {"gamma": 10.0}}),
]


def all_finite(checkpoint: dict) -> bool:
    return all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())


def test_exploding_learning_rate_stops_at_the_step_and_keeps_the_best_checkpoint(tmp_path):
    result = run_cli("fit", "--config", str(CONFIGS / "iris.yaml"), *EXPLODING, cwd=tmp_path, check=False)

    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("lit-cs201: training stopped: train/loss is nan at step ")
    step = int(message.split(" at step ")[1].split()[0])
    epoch = int(message.split("(epoch ")[1].split(",")[0]) - 1  # the message counts from 1, Lightning from 0
    assert "learning rate" in message
    assert "The best checkpoint so far is unaffected: runs/iris/version_0/best.ckpt" in result.stdout

    run = tmp_path / "runs" / "iris" / "version_0"
    best = torch.load(run / "best.ckpt", weights_only=True)
    last = torch.load(run / "last.ckpt", weights_only=True)
    assert all_finite(best) and all_finite(last)
    assert last["epoch"] == epoch - 1 and last["global_step"] < step  # the last epoch that ended well
    curves = scalars(run)
    assert len(curves["val/loss"]) == epoch and all(map(torch.isfinite, torch.tensor(curves["val/loss"])))

    test = run_cli("test", "--ckpt_path", "best", cwd=tmp_path)  # the kept model is usable
    assert torch.isfinite(torch.tensor(scalars(run)["test/loss"])).all(), test.stdout


class PoisonAfterTraining(Callback):
    """Make the weights NaN after the last training batch of an epoch, before that epoch's validation."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == trainer.num_training_batches - 1:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(float("nan"))


class NaNWhereTheDataNeverGoes(Callback):
    """A weight that turns NaN without touching the outputs, as oneDNN's bf16 kernels do to the outer taps of a
    3x3 kernel on a 1x1 feature map: val/loss stays finite, and the checkpoint saved next could not be loaded."""

    def on_validation_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1 and not trainer.sanity_checking:
            pl_module.register_parameter("never_used", torch.nn.Parameter(torch.tensor([0.0, float("nan")])))


@pytest.mark.parametrize(
    ("poison", "message"),
    [
        (PoisonAfterTraining(epoch=1), r"val/loss is nan after epoch 2 \(step \d+\)"),
        (NaNWhereTheDataNeverGoes(), r"the weights never_used are no longer finite numbers after epoch 2"),
    ],
    ids=["outputs", "weights the data never meets"],
)
def test_a_model_that_turns_non_finite_is_never_saved(tmp_path, poison, message):
    trainer = Trainer(
        max_epochs=3,
        callbacks=[best_checkpoint(), last_checkpoint(), poison],
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(NonFiniteLossError, match=message):
        trainer.fit(Classifier(num_classes=3, input_shape=[4]), datamodule=IrisDataModule())
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(tmp_path / name, weights_only=True)
        assert checkpoint["epoch"] == 0 and all_finite(checkpoint), name
