"""lit_cs201.course.xor: the numpy network learns XOR, its hand-written gradients equal autograd's, the worked
example is right, and the command line works."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from lit_cs201.course import xor
from lit_cs201.course.xor import XOR_INPUTS, XOR_TARGETS, NeuralNetwork, worked_example


def _torch_loss(net: NeuralNetwork, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E = 1/2 sum((y_hat - y)^2) of the same parameters, computed by torch in float64, with leaf tensors."""
    params = {
        name: torch.tensor(getattr(net, name), dtype=torch.float64, requires_grad=True)
        for name in ("weights_input_hidden", "bias_hidden", "weights_hidden_output", "bias_output")
    }
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    hidden = torch.sigmoid(Xt @ params["weights_input_hidden"] + params["bias_hidden"])
    out = torch.sigmoid(hidden @ params["weights_hidden_output"] + params["bias_output"])
    return 0.5 * ((out - yt) ** 2).sum(), params


# -- training ------------------------------------------------------------------------------------------------
def test_learns_xor_from_a_fixed_seed() -> None:
    net = NeuralNetwork(2, 4, 1, rng=0)
    history = net.train(XOR_INPUTS, XOR_TARGETS, epochs=10_000, learning_rate=0.1, log=None)

    assert len(history) == 10_000
    # Full-batch gradient descent with a small step: every epoch lowers the loss for this seed.
    assert np.all(np.diff(history) < 0)
    assert history[0] > 0.2 and history[-1] < 0.01

    predictions = net.feedforward(XOR_INPUTS)[:, 0]
    assert predictions.shape == (4,)
    np.testing.assert_array_less(predictions[[0, 3]], 0.2)  # 0 XOR 0, 1 XOR 1
    np.testing.assert_array_less(0.8, predictions[[1, 2]])  # 0 XOR 1, 1 XOR 0
    assert net.loss(XOR_INPUTS, XOR_TARGETS) == pytest.approx(np.mean((predictions - XOR_TARGETS[:, 0]) ** 2))


def test_training_logs_every_n_epochs_like_the_course() -> None:
    lines: list[str] = []
    NeuralNetwork(rng=1).train(XOR_INPUTS, XOR_TARGETS, epochs=9, learning_rate=0.1, log_every=4, log=lines.append)
    assert [line.split(",")[0] for line in lines] == ["Epoch 0", "Epoch 4", "Epoch 8"]
    assert all(", Loss: " in line for line in lines)


def test_seed_and_generator_make_runs_reproducible() -> None:
    a = NeuralNetwork(rng=7)
    b = NeuralNetwork(rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weights_input_hidden, b.weights_input_hidden)
    np.testing.assert_array_equal(a.weights_hidden_output, b.weights_hidden_output)
    assert not np.array_equal(a.weights_input_hidden, NeuralNetwork(rng=8).weights_input_hidden)
    # Course initialisation: standard normal weights, zero biases.
    assert a.weights_input_hidden.shape == (2, 4) and a.weights_hidden_output.shape == (4, 1)
    assert not a.bias_hidden.any() and not a.bias_output.any()


def test_bad_shapes_are_reported() -> None:
    net = NeuralNetwork()
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        net.feedforward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="targets of shape"):
        net.gradients(XOR_INPUTS, np.zeros(4))
    with pytest.raises(ValueError, match="hidden_size"):
        NeuralNetwork(hidden_size=0)


# -- gradients -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hand_written_gradients_match_autograd(seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = NeuralNetwork(input_size=3, hidden_size=5, output_size=2, rng=rng)
    # Non-zero biases, so that their gradients are exercised too.
    net.bias_hidden[...] = rng.normal(size=net.bias_hidden.shape)
    net.bias_output[...] = rng.normal(size=net.bias_output.shape)
    X = rng.normal(size=(6, 3))
    y = rng.uniform(size=(6, 2))

    loss, params = _torch_loss(net, X, y)
    loss.backward()
    grads = net.gradients(X, y)

    assert set(grads) == set(params)
    for name, param in params.items():
        assert grads[name].shape == param.shape
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_backward_is_one_gradient_descent_step() -> None:
    rng = np.random.default_rng(3)
    net = NeuralNetwork(rng=rng)
    before = {name: getattr(net, name).copy() for name in ("weights_input_hidden", "weights_hidden_output")}
    grads = net.gradients(XOR_INPUTS, XOR_TARGETS)
    net.backward(XOR_INPUTS, XOR_TARGETS, learning_rate=0.5)
    for name, old in before.items():
        np.testing.assert_allclose(getattr(net, name), old - 0.5 * grads[name], rtol=1e-12)
    np.testing.assert_allclose(net.bias_output, -0.5 * grads["bias_output"], rtol=1e-12)


def test_sigmoid_is_stable_for_large_inputs() -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the right answer
        values = xor.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0])


# -- the worked example --------------------------------------------------------------------------------------
def _autograd_worked_example(x1: float, x2: float, t: float, lr: float, w: dict[str, float]) -> dict[str, object]:
    """The same step by torch autograd: deltas are -dE/dnet, new weights are w - lr * dE/dw."""
    wt = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    net3 = wt["w13"] * x1 + wt["w23"] * x2
    net4 = wt["w14"] * x1 + wt["w24"] * x2
    y3, y4 = torch.sigmoid(net3), torch.sigmoid(net4)
    net5 = wt["w35"] * y3 + wt["w45"] * y4
    y5 = torch.sigmoid(net5)
    for node in (net3, net4, net5):
        node.retain_grad()
    loss = 0.5 * (t - y5) ** 2
    loss.backward()
    return {
        "y": (y3.item(), y4.item(), y5.item()),
        "loss": loss.item(),
        "deltas": (-net3.grad.item(), -net4.grad.item(), -net5.grad.item()),
        "new": {k: (v - lr * v.grad).item() for k, v in wt.items()},
    }


def test_worked_example_matches_autograd() -> None:
    ex = worked_example()
    ref = _autograd_worked_example(0.35, 0.7, 0.5, 1.0, xor.WORKED_WEIGHTS)

    assert (ex.forward.y3, ex.forward.y4, ex.forward.y5) == pytest.approx(ref["y"], abs=1e-12)
    assert ex.loss == pytest.approx(ref["loss"], abs=1e-12)
    assert (ex.delta3, ex.delta4, ex.delta5) == pytest.approx(ref["deltas"], abs=1e-12)
    assert ex.new_weights == pytest.approx(ref["new"], abs=1e-12)
    # The second pass uses the new weights and, with this small step, lowers the error.
    again = _autograd_worked_example(0.35, 0.7, 0.5, 1.0, ex.new_weights)
    assert ex.second_forward.y5 == pytest.approx(again["y"][2], abs=1e-12)
    assert ex.second_loss == pytest.approx(again["loss"], abs=1e-12)
    assert ex.second_loss < ex.loss


def test_worked_example_values_as_documented() -> None:
    """The numbers in docs/side_modules.md (w13: input 1 -> hidden unit 3; w35: hidden unit 3 -> output 5)."""
    ex = worked_example()
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    assert ex.forward.net3 == pytest.approx(0.35 * 0.2 + 0.7 * 0.2)
    assert ex.forward.net4 == pytest.approx(0.35 * 0.3 + 0.7 * 0.3)
    assert ex.forward.y3 == pytest.approx(sig(0.21)) and round(ex.forward.y3, 4) == 0.5523
    assert round(ex.forward.y4, 4) == 0.5781
    assert round(ex.forward.y5, 4) == 0.6651
    assert round(ex.error, 4) == -0.1651
    assert round(ex.delta5, 5) == -0.03677
    assert round(ex.delta3, 6) == -0.002728
    assert round(ex.delta4, 6) == -0.008071
    expected_new = {
        "w13": 0.199045,
        "w23": 0.198091,
        "w14": 0.297175,
        "w24": 0.29435,
        "w35": 0.279691,
        "w45": 0.878743,
    }
    assert {k: round(v, 6) for k, v in ex.new_weights.items()} == expected_new
    assert round(ex.second_forward.y5, 4) == 0.6596


def test_worked_example_agrees_with_the_matrix_network() -> None:
    """The unit-by-unit example and the vectorised class compute the same gradients (biases fixed at zero)."""
    w = xor.WORKED_WEIGHTS
    net = NeuralNetwork(2, 2, 1)
    net.weights_input_hidden[...] = [[w["w13"], w["w14"]], [w["w23"], w["w24"]]]
    net.weights_hidden_output[...] = [[w["w35"]], [w["w45"]]]
    grads = net.gradients([[0.35, 0.7]], [[0.5]])
    ex = worked_example()
    lr = ex.learning_rate
    new = ex.new_weights
    np.testing.assert_allclose(
        net.weights_input_hidden - lr * grads["weights_input_hidden"],
        [[new["w13"], new["w14"]], [new["w23"], new["w24"]]],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        net.weights_hidden_output - lr * grads["weights_hidden_output"],
        [[new["w35"]], [new["w45"]]],
        rtol=1e-12,
    )


def test_worked_example_with_other_weights_matches_autograd() -> None:
    rng = np.random.default_rng(11)
    w = {k: float(v) for k, v in zip(xor.WORKED_WEIGHTS, rng.normal(size=6), strict=True)}
    ex = worked_example(x1=0.9, x2=-0.4, target=0.1, learning_rate=0.3, weights=w)
    ref = _autograd_worked_example(0.9, -0.4, 0.1, 0.3, w)
    assert (ex.delta3, ex.delta4, ex.delta5) == pytest.approx(ref["deltas"], abs=1e-12)
    assert ex.new_weights == pytest.approx(ref["new"], abs=1e-12)
    with pytest.raises(ValueError, match="keys"):
        worked_example(weights={"w1": 0.1})


# -- command line --------------------------------------------------------------------------------------------
def test_cli_trains_and_prints_losses_and_predictions(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lit_cs201.course.xor", "--epochs", "200", "--log-every", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Epoch 0, Loss: " in out and "Epoch 100, Loss: " in out and "Epoch 200" not in out
    assert "Final loss (after 200 epochs): " in out
    assert "Predictions after training:" in out
    prediction_lines = [line for line in out.splitlines() if "prediction" in line]
    assert len(prediction_lines) == 4
    for line in prediction_lines:
        assert 0.0 < float(line.split()[-1]) < 1.0
    # Same seed, same numbers as the library call.
    net = NeuralNetwork(rng=0)
    net.train(XOR_INPUTS, XOR_TARGETS, 200, 0.1, log=None)
    assert f"Final loss (after 200 epochs): {net.loss(XOR_INPUTS, XOR_TARGETS):.6f}" in out


def test_cli_worked_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert xor.main(["--worked-example"]) == 0
    out = capsys.readouterr().out
    ex = worked_example()
    for text in (
        "y3 = sigmoid(net3) = 0.5523",
        "y5 = sigmoid(net5) = 0.6651",
        f"= {ex.delta4:.6f}",
        "w45 = ",
    ):
        assert text in out
    assert "5. Second forward pass" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--epochs", "ten"], "--epochs"),
        (["--x"], "--x"),
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert xor.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m lit_cs201.course.xor: error: ") and err.count("\n") == 1
    assert message in err
