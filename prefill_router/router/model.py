"""SharedTrunkNet: one multi-output MLP predicting P(target k answers correctly) (method.md §5).

Axis letters: B batch rows, K targets, S seeds.

    Dense(d_in→256) → ReLU → Dropout(0.3) → Dense(256→128) → ReLU → Dropout(0.2) → Dense(128→K)  # logits

Init as PyTorch's default: kernels variance_scaling(1/3, 'fan_in', 'uniform') (= U(±1/√fan_in)),
biases U(±1/√fan_in). The model holds only ``nnx.Param`` state (dropout keys are passed per call), so
``nnx.split(model)`` gives (graphdef, params) and training is a pure function of params.
Dropout (``dropout``) draws one random uint32 per TWO activations (its 16-bit halves), so the drop
probability is rate rounded to a multiple of 2^-16 (0.3 -> 0.300003); it halves the threefry work, which
is a third of a training step of the small default trunk on CPU.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class TrunkConfig:
    """Architecture: d_in inputs, hidden widths, dropout rate after each hidden layer, n_targets outputs."""

    d_in: int
    n_targets: int
    hidden: tuple[int, ...] = (256, 128)
    dropout: tuple[float, ...] = (0.3, 0.2)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "dropout", tuple(float(r) for r in self.dropout))
        if len(self.hidden) != len(self.dropout):
            raise ValueError(f"hidden {self.hidden} and dropout {self.dropout} must have the same length")
        if self.d_in < 1 or self.n_targets < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"all widths must be >= 1: d_in={self.d_in}, n_targets={self.n_targets}, "
                             f"hidden={self.hidden}")
        if any(not 0.0 <= r < 1.0 for r in self.dropout):
            raise ValueError(f"dropout rates must lie in [0, 1), got {self.dropout}")

    def to_json(self) -> dict[str, Any]:
        return {"d_in": self.d_in, "n_targets": self.n_targets, "hidden": list(self.hidden),
                "dropout": list(self.dropout)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrunkConfig":
        return cls(int(d["d_in"]), int(d["n_targets"]), tuple(d["hidden"]), tuple(d["dropout"]))


def _uniform_bias_init(fan_in: int):
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class SharedTrunkNet(nnx.Module):
    """MLP trunk: x [B, d_in] -> logits [B, K]."""

    def __init__(self, config: TrunkConfig, *, rngs: nnx.Rngs):
        self.config = config
        widths = (config.d_in, *config.hidden, config.n_targets)
        kernel_init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
        self.layers = nnx.List([
            nnx.Linear(w_in, w_out, kernel_init=kernel_init, bias_init=_uniform_bias_init(w_in), rngs=rngs)
            for w_in, w_out in zip(widths[:-1], widths[1:])])

    def __call__(self, x: jax.Array, *, deterministic: bool, dropout_key: jax.Array | None = None) -> jax.Array:
        """Logits [B, K]. ``dropout_key`` is required when ``deterministic`` is False (training)."""
        if not deterministic and dropout_key is None:
            raise ValueError("training mode (deterministic=False) needs a dropout_key")
        rates = self.config.dropout
        keys = jax.random.split(dropout_key, len(rates)) if not deterministic else [None] * len(rates)
        for layer, rate, key in zip(self.layers[:-1], rates, keys):
            x = jax.nn.relu(layer(x))
            if key is not None:
                x = dropout(x, rate, key)
        return self.layers[-1](x)


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout: zero each entry with probability q = round(rate·2^16)/2^16, scale the rest by 1/(1-q).

    Decisions compare 16-bit halves of ``ceil(x.size / 2)`` random uint32 against round(rate·2^16).
    """
    threshold = min(round(rate * 65536), 65535)
    if threshold == 0:
        return x
    bits = jax.random.bits(key, ((x.size + 1) // 2,), jnp.uint32)
    halves = jnp.concatenate([bits & 0xFFFF, bits >> 16])[:x.size].reshape(x.shape)
    return jnp.where(halves >= threshold, x * (65536.0 / (65536 - threshold)), 0.0).astype(x.dtype)


def init_params(config: TrunkConfig, key: jax.Array) -> tuple[nnx.GraphDef, dict]:
    """(graphdef, params) of a freshly initialised trunk; params is a pure dict
    {'layers': {i: {'kernel': [in, out], 'bias': [out]}}}; vmappable over ``key``."""
    graphdef, state = nnx.split(SharedTrunkNet(config, rngs=nnx.Rngs(params=key)))
    return graphdef, nnx.to_pure_dict(state)


def graphdef_of(config: TrunkConfig) -> nnx.GraphDef:
    """The graphdef of a trunk (no parameters are materialised)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: SharedTrunkNet(config, rngs=nnx.Rngs(0))))
    return graphdef


def apply(graphdef: nnx.GraphDef, params: dict, x: jax.Array, *, deterministic: bool = True,
          dropout_key: jax.Array | None = None) -> jax.Array:
    """Pure forward of params (pure dict, as from ``init_params``): logits [B, K]."""
    return nnx.merge(graphdef, params)(x, deterministic=deterministic, dropout_key=dropout_key)


def masked_bce(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """BCE-with-logits averaged over observed entries: Σ m·bce / max(Σ m, 1).

    logits, labels [B, K]; mask [B, K] float or bool weights (1 = observed label, 0 = missing label or a
    padding row). Missing entries contribute nothing to the value or the gradient (labels there may be NaN).
    With every label observed this is the paper's ``sigmoid_binary_cross_entropy(logits, y).mean()``.
    """
    mask = mask.astype(logits.dtype)
    labels = jnp.where(mask > 0, labels, 0.0).astype(logits.dtype)
    per_entry = optax.sigmoid_binary_cross_entropy(logits, labels)
    return jnp.sum(jnp.where(mask > 0, per_entry, 0.0) * mask) / jnp.maximum(jnp.sum(mask), 1.0)
