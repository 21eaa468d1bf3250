"""The course's worked backpropagation example: one step on a 2-2-1 sigmoid network, every number shown.

Inputs 0.35 and 0.7, target 0.5, learning rate 1: `worked_example` computes the forward pass, the deltas, the new
weights and the second forward pass unit by unit; `format_worked_example` writes them out as
``python -m lit_cs201.course.xor --worked-example`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_cs201.course.sigmoid_net import sigmoid

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

    Written out unit by unit, not with the matrix code of `lit_cs201.course.sigmoid_net`, because the point is to
    see each number. ``weights`` defaults to :data:`WORKED_WEIGHTS`; any other values must use the same six keys.
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
