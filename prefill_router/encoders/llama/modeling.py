"""Llama forward (also Qwen2/Qwen3, whose differences are config flags: q/k/v biases, q/k norms):
pre-norm residual blocks with plain RMSNorm (x * w).

    x = x + Attn(attn_norm(x));   x = x + MLP(mlp_norm(x))
"""
from prefill_router.encoders.base import Modeling, Sublayers


def block(s: Sublayers, x):
    x = x + s.attention(s.norm(x, "attn_norm"))
    return x + s.mlp(s.norm(x, "mlp_norm"))


MODELING = Modeling(block=block, block_norms=("attn_norm", "mlp_norm"))
