"""A 2-4-1 sigmoid network with hand-written backpropagation, in numpy, and the course's worked example.

Run ``python -m lit_cs201.course.xor`` to train on XOR, or ``python -m lit_cs201.course.xor --worked-example`` to print the
single-step backpropagation example (inputs 0.35 and 0.7, target 0.5) step by step.

The network follows the course program: weights drawn from a standard normal distribution, biases zero,
sigmoid on every unit, full-batch gradient descent. Two details make our numbers comparable with the course's:

* the loss that is *printed* is the mean squared error over the four XOR rows, measured before that epoch's
  update;
* the update is the gradient of ``E = 1/2 * sum((y_hat - y)**2)`` (a sum over rows, not a mean), because that
  is what the course's ``backward`` applies. A mean would silently divide the learning rate by the batch size.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lit_cs201.course.argtypes import ArgumentParser, positive_float, positive_int
from lit_cs201.errors import run_command

#: The four XOR rows and their targets, shaped (4, 2) and (4, 1) like the course's arrays.
XOR_INPUTS: NDArray[np.float64] = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_TARGETS: NDArray[np.float64] = np.array([[0], [1], [1], [0]], dtype=np.float64)


def sigmoid(z: ArrayLike) -> NDArray[np.float64]:
    """Logistic function ``1 / (1 + exp(-z))``, elementwise.

    Written as ``exp(-log(1 + exp(-z)))`` so that large negative inputs (random weights in the gradient check,
    a saturated unit late in training) give 0 instead of an overflow warning.
    """
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


class NeuralNetwork:
    """Fully connected ``input -> hidden -> output`` network with sigmoid units and hand-written gradients.

    Attribute names follow the course program so the two can be read side by side. Row vectors: an input batch
    ``X`` has shape ``(n, input_size)`` and ``X @ weights_input_hidden`` is the hidden pre-activation.

    Args:
        input_size: Number of inputs (2 for XOR).
        hidden_size: Number of hidden sigmoid units (4 in the course).
        output_size: Number of output sigmoid units (1 for XOR).
        rng: A numpy ``Generator``, an integer seed for one, or None for an unseeded one. Weights are standard
            normal, biases zero, as in the course (which used the unseeded global ``np.random.randn``).
    """

    def __init__(
        self,
        input_size: int = 2,
        hidden_size: int = 4,
        output_size: int = 1,
        rng: np.random.Generator | int | None = 0,
    ) -> None:
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.output_size = int(output_size)
        # Drawn in this order (input->hidden first) so a seed gives the same network in every release.
        self.weights_input_hidden = generator.standard_normal((self.input_size, self.hidden_size))
        self.weights_hidden_output = generator.standard_normal((self.hidden_size, self.output_size))
        self.bias_hidden = np.zeros((1, self.hidden_size))
        self.bias_output = np.zeros((1, self.output_size))

    # -- forward ---------------------------------------------------------------------------------------------
    def _check_inputs(self, X: ArrayLike) -> NDArray[np.float64]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.input_size:
            raise ValueError(f"expected inputs of shape (n, {self.input_size}), got {X.shape}")
        return X

    def _forward(self, X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        hidden = sigmoid(X @ self.weights_input_hidden + self.bias_hidden)
        output = sigmoid(hidden @ self.weights_hidden_output + self.bias_output)
        return hidden, output

    def feedforward(self, X: ArrayLike) -> NDArray[np.float64]:
        """Outputs for a batch ``X`` of shape ``(n, input_size)``, as an array ``(n, output_size)``."""
        return self._forward(self._check_inputs(X))[1]

    # -- backward --------------------------------------------------------------------------------------------
    def gradients(self, X: ArrayLike, y: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """Gradients of ``E = 1/2 * sum((feedforward(X) - y)**2)`` with respect to every parameter.

        Returns a dict keyed by attribute name (``weights_input_hidden``, ``bias_hidden``,
        ``weights_hidden_output``, ``bias_output``), each array shaped like its parameter.
        """
        X = self._check_inputs(X)
        y = np.asarray(y, dtype=np.float64)
        hidden, output = self._forward(X)
        if y.shape != output.shape:
            raise ValueError(f"expected targets of shape {output.shape}, got {y.shape}")
        # sigmoid'(z) = s * (1 - s): the derivative comes from the stored activation, no need to keep z.
        delta_output = (output - y) * output * (1.0 - output)  # dE/dz_output, (n, output_size)
        delta_hidden = (delta_output @ self.weights_hidden_output.T) * hidden * (1.0 - hidden)  # (n, hidden_size)
        return {
            "weights_input_hidden": X.T @ delta_hidden,
            "bias_hidden": delta_hidden.sum(axis=0, keepdims=True),
            "weights_hidden_output": hidden.T @ delta_output,
            "bias_output": delta_output.sum(axis=0, keepdims=True),
        }

    def backward(self, X: ArrayLike, y: ArrayLike, learning_rate: float) -> None:
        """One gradient-descent step of ``learning_rate`` on ``E = 1/2 * sum((feedforward(X) - y)**2)``."""
        for name, grad in self.gradients(X, y).items():
            # In-place so that references a caller holds to the arrays see the update, as in the course.
            getattr(self, name)[...] -= learning_rate * grad

    def loss(self, X: ArrayLike, y: ArrayLike) -> float:
        """Mean squared error over all outputs: the value the course prints as ``Loss``."""
        return float(np.mean(np.square(np.asarray(y, dtype=np.float64) - self.feedforward(X))))

    def train(
        self,
        X: ArrayLike,
        y: ArrayLike,
        epochs: int,
        learning_rate: float,
        log_every: int = 4000,
        log: Callable[[str], object] | None = print,
    ) -> list[float]:
        """Full-batch gradient descent for ``epochs`` steps.

        Returns the loss (mean squared error) before each step, one value per epoch. Every ``log_every``
        epochs, starting at epoch 0, ``log`` receives ``"Epoch <e>, Loss: <loss>"``; ``log=None`` is silent.
        """
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        history: list[float] = []
        for epoch in range(epochs):
            history.append(self.loss(X, y))
            if log is not None and epoch % log_every == 0:
                log(f"Epoch {epoch}, Loss: {history[-1]:.6f}")
            self.backward(X, y, learning_rate)
        return history


# -- the worked example --------------------------------------------------------------------------------------
#: Weights of the worked example: ``w13`` connects input x1 to hidden unit 3, ``w35`` unit 3 to output 5.
WORKED_WEIGHTS: dict[str, float] = {"w13": 0.2, "w23": 0.2, "w14": 0.3, "w24": 0.3, "w35": 0.3, "w45": 0.9}


@dataclass(frozen=True)
class ForwardPass:
    """Pre-activations (``net*``) and outputs (``y*``) of units 3, 4 (hidden) and 5 (output)."""

    net3: float
    y3: float
    net4: float
    y4: float
    net5: float
    y5: float


@dataclass(frozen=True)
class WorkedExample:
    """Every intermediate value of one backpropagation step on the 2-2-1 network without biases.

    Deltas follow the course's sign convention, ``delta_k = -dE/dnet_k`` with ``E = 1/2 (t - y5)^2``, so every
    update is ``w_jk += learning_rate * delta_k * y_j``.
    """

    x1: float
    x2: float
    target: float
    learning_rate: float
    weights: dict[str, float]
    forward: ForwardPass
    error: float  # t - y5
    loss: float  # 1/2 (t - y5)^2
    delta5: float
    delta3: float
    delta4: float
    new_weights: dict[str, float]
    second_forward: ForwardPass
    second_error: float
    second_loss: float


def _forward_221(x1: float, x2: float, w: dict[str, float]) -> ForwardPass:
    net3 = w["w13"] * x1 + w["w23"] * x2
    net4 = w["w14"] * x1 + w["w24"] * x2
    y3, y4 = float(sigmoid(net3)), float(sigmoid(net4))
    net5 = w["w35"] * y3 + w["w45"] * y4
    return ForwardPass(net3=net3, y3=y3, net4=net4, y4=y4, net5=net5, y5=float(sigmoid(net5)))


def worked_example(
    x1: float = 0.35,
    x2: float = 0.7,
    target: float = 0.5,
    learning_rate: float = 1.0,
    weights: dict[str, float] | None = None,
) -> WorkedExample:
    """Compute the worked backpropagation example: forward pass, deltas, updated weights, second forward pass.

    Written out unit by unit, not with the matrix code above, because the point is to see each number.
    ``weights`` defaults to :data:`WORKED_WEIGHTS`; any other values must use the same six keys.
    """
    w = dict(WORKED_WEIGHTS if weights is None else weights)
    if set(w) != set(WORKED_WEIGHTS):
        raise ValueError(f"weights must have exactly the keys {sorted(WORKED_WEIGHTS)}, got {sorted(w)}")
    f = _forward_221(x1, x2, w)
    error = target - f.y5
    delta5 = error * f.y5 * (1.0 - f.y5)
    # Hidden deltas use the *old* output weights: all updates are computed before any is applied.
    delta3 = f.y3 * (1.0 - f.y3) * w["w35"] * delta5
    delta4 = f.y4 * (1.0 - f.y4) * w["w45"] * delta5
    new = {
        "w13": w["w13"] + learning_rate * delta3 * x1,
        "w23": w["w23"] + learning_rate * delta3 * x2,
        "w14": w["w14"] + learning_rate * delta4 * x1,
        "w24": w["w24"] + learning_rate * delta4 * x2,
        "w35": w["w35"] + learning_rate * delta5 * f.y3,
        "w45": w["w45"] + learning_rate * delta5 * f.y4,
    }
    f2 = _forward_221(x1, x2, new)
    return WorkedExample(
        x1=x1,
        x2=x2,
        target=target,
        learning_rate=learning_rate,
        weights=w,
        forward=f,
        error=error,
        loss=0.5 * error**2,
        delta5=delta5,
        delta3=delta3,
        delta4=delta4,
        new_weights=new,
        second_forward=f2,
        second_error=target - f2.y5,
        second_loss=0.5 * (target - f2.y5) ** 2,
    )


def format_worked_example(ex: WorkedExample) -> str:
    """Render a :class:`WorkedExample` as the step-by-step text that ``--worked-example`` prints."""
    w, n, f, g = ex.weights, ex.new_weights, ex.forward, ex.second_forward
    lr = ex.learning_rate
    lines = [
        f"Worked backpropagation example: x1 = {ex.x1}, x2 = {ex.x2}, target t = {ex.target}, learning rate = {lr}",
        "Network: inputs 1, 2 -> hidden units 3, 4 -> output unit 5; sigmoid everywhere, no biases;",
        "w_jk is the weight from unit j to unit k; E = 1/2 (t - y5)^2; delta_k = -dE/dnet_k.",
        "Weights: " + ", ".join(f"{k} = {v}" for k, v in w.items()),
        "",
        "1. Forward pass",
        f"   net3 = w13*x1 + w23*x2 = {w['w13']}*{ex.x1} + {w['w23']}*{ex.x2} = {f.net3:.4f}"
        f"   y3 = sigmoid(net3) = {f.y3:.4f}",
        f"   net4 = w14*x1 + w24*x2 = {w['w14']}*{ex.x1} + {w['w24']}*{ex.x2} = {f.net4:.4f}"
        f"   y4 = sigmoid(net4) = {f.y4:.4f}",
        f"   net5 = w35*y3 + w45*y4 = {w['w35']}*{f.y3:.4f} + {w['w45']}*{f.y4:.4f} = {f.net5:.4f}"
        f"   y5 = sigmoid(net5) = {f.y5:.4f}",
        "",
        "2. Error",
        f"   t - y5 = {ex.target} - {f.y5:.4f} = {ex.error:.4f}   E = 1/2 (t - y5)^2 = {ex.loss:.6f}",
        "",
        "3. Deltas (sigmoid'(net) = y (1 - y))",
        f"   delta5 = (t - y5) y5 (1 - y5) = {ex.error:.4f} * {f.y5:.4f} * {1 - f.y5:.4f} = {ex.delta5:.6f}",
        f"   delta3 = y3 (1 - y3) w35 delta5 = {f.y3:.4f} * {1 - f.y3:.4f} * {w['w35']} * {ex.delta5:.6f}"
        f" = {ex.delta3:.6f}",
        f"   delta4 = y4 (1 - y4) w45 delta5 = {f.y4:.4f} * {1 - f.y4:.4f} * {w['w45']} * {ex.delta5:.6f}"
        f" = {ex.delta4:.6f}",
        "",
        "4. New weights (w_jk += learning rate * delta_k * y_j, with y1 = x1, y2 = x2)",
    ]
    sources = {
        "w13": ("delta3", ex.delta3, "x1", ex.x1),
        "w23": ("delta3", ex.delta3, "x2", ex.x2),
        "w14": ("delta4", ex.delta4, "x1", ex.x1),
        "w24": ("delta4", ex.delta4, "x2", ex.x2),
        "w35": ("delta5", ex.delta5, "y3", f.y3),
        "w45": ("delta5", ex.delta5, "y4", f.y4),
    }
    for k, (dname, dval, iname, ival) in sources.items():
        lines.append(
            f"   {k} = {w[k]} + {lr} * {dname} * {iname} = {w[k]} + {lr} * ({dval:.6f}) * {ival:.4f} = {n[k]:.6f}"
        )
    lines += [
        "",
        "5. Second forward pass with the new weights",
        f"   net3 = {g.net3:.4f}   y3 = {g.y3:.4f}",
        f"   net4 = {g.net4:.4f}   y4 = {g.y4:.4f}",
        f"   net5 = {g.net5:.4f}   y5 = {g.y5:.4f}",
        f"   t - y5 = {ex.second_error:.4f}   E = {ex.second_loss:.6f} (was {ex.loss:.6f})",
    ]
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------------------


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lit_cs201.course.xor",
        description="Train the course's 2-4-1 sigmoid network on XOR with hand-written backpropagation, "
        "or print the worked backpropagation example step by step.",
    )
    parser.add_argument("--epochs", type=positive_int, default=10_000, help="training epochs (default: 10000)")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="learning rate (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation (default: 0)")
    parser.add_argument("--hidden-size", type=positive_int, default=4, help="hidden units (default: 4)")
    parser.add_argument(
        "--log-every", type=positive_int, default=4000, help="print the loss every N epochs (default: 4000)"
    )
    parser.add_argument(
        "--worked-example",
        action="store_true",
        help="print the worked backpropagation example (x = 0.35, 0.7; target 0.5; learning rate 1) and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lit_cs201.course.xor``; returns the process exit status."""
    parser = _parser()
    return run_command(parser.prog, lambda: _run(parser.parse_args(argv)))


def _run(args: argparse.Namespace) -> int:
    if args.worked_example:
        print(format_worked_example(worked_example()))
        return 0

    net = NeuralNetwork(2, args.hidden_size, 1, rng=args.seed)
    net.train(XOR_INPUTS, XOR_TARGETS, args.epochs, args.lr, log_every=args.log_every)
    print(f"Final loss (after {args.epochs} epochs): {net.loss(XOR_INPUTS, XOR_TARGETS):.6f}")
    predictions = net.feedforward(XOR_INPUTS)
    print("Predictions after training:")
    for x, target, p in zip(XOR_INPUTS.astype(int), XOR_TARGETS[:, 0].astype(int), predictions[:, 0], strict=True):
        print(f"  {x[0]} XOR {x[1]} = {target}   prediction {p:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
