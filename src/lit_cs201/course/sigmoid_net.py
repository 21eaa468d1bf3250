"""A fully connected sigmoid network with hand-written backpropagation, in numpy: the course's XOR network.

The network follows the course program: weights drawn from a standard normal distribution, biases zero,
sigmoid on every unit, full-batch gradient descent. Two details make our numbers comparable with the course's:

* the loss that is *printed* is the mean squared error over the four XOR rows, measured before that epoch's
  update;
* the update is the gradient of ``E = 1/2 * sum((y_hat - y)**2)`` (a sum over rows, not a mean), because that
  is what the course's ``backward`` applies. A mean would silently divide the learning rate by the batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray


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
