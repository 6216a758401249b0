"""Gemma 3 forward: sandwich norms around attention and MLP, RMSNorm x * (1 + w) (weights start at
0), embedding * sqrt(D).

    x = x + attn_post_norm(Attn(attn_norm(x)));   x = x + mlp_post_norm(MLP(mlp_norm(x)))

The rest are config flags of the shared sublayers: q/k RMSNorm, GELU-tanh MLP, attention scale
query_pre_attn_scalar**-0.5, sliding-window blocks with their own RoPE theta, logit soft-capping.
"""
from prefill_router.encoders.base import Modeling, Sublayers


def block(s: Sublayers, x):
    x = x + s.norm(s.attention(s.norm(x, "attn_norm")), "attn_post_norm")
    return x + s.norm(s.mlp(s.norm(x, "mlp_norm")), "mlp_post_norm")


MODELING = Modeling(block=block, block_norms=("attn_norm", "attn_post_norm", "mlp_norm", "mlp_post_norm"),
                    unit_offset_norm=True, scale_embedding=True)
