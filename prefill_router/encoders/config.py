"""EncoderConfig: one frozen, hashable description of a decoder-only encoder LLM, and the helpers
family records use to convert transformers `config.json` dicts both ways.

Every family shares this config; its differences are flags (q/k/v bias, q/k RMSNorm, GELU-tanh MLP,
sliding-window layers with their own RoPE theta, logit soft-capping) plus the family's own forward
(`base.Modeling`, in its folder). `family` is the name of the record in `families.FAMILIES`.

A family converts an HF dict by listing the fields it handles and the fields it knowingly ignores
(`check_fields`); any other field raises (penzai style), so a new RoPE variant or attention trick fails
loudly instead of converting silently wrong. `decoder_fields` / `decoder_hf_fields` convert the fields
all llama-like configs share, in the two directions.
"""
import dataclasses
from typing import Any, Mapping

FULL = "full_attention"
SLIDING = "sliding_attention"

# Fields every transformers config may carry that do not change an inference forward pass.
COMMON_IGNORED = frozenset({
    "_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype", "use_cache",
    "initializer_range", "attention_dropout", "output_attentions", "output_hidden_states",
    "return_dict", "chunk_size_feed_forward", "is_encoder_decoder", "id2label", "label2id",
    "problem_type", "tokenizer_class", "prefix", "task_specific_params", "finetuning_task",
    "is_decoder", "add_cross_attention", "tie_encoder_decoder", "pruned_heads", "torchscript",
    "cross_attention_hidden_size", "decoder_start_token_id", "sep_token_id", "suppress_tokens",
    "begin_suppress_tokens", "max_length", "num_return_sequences", "temperature", "top_k", "top_p",
    "transformers.js_config", "quantization_config", "unsloth_fixed", "auto_map",
})


@dataclasses.dataclass(frozen=True)
class Llama3RopeScaling:
    """Llama 3.x frequency-dependent RoPE rescaling (transformers rope_type 'llama3')."""
    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shapes and numerics of one encoder. Axis letters: D width, F MLP width, N query heads,
    K kv heads, H head dim, L blocks, V vocab."""
    family: str                      # name of its record in families.FAMILIES
    vocab_size: int                  # V
    hidden_size: int                 # D
    intermediate_size: int           # F
    num_layers: int                  # L
    num_heads: int                   # N
    num_kv_heads: int                # K (N % K == 0)
    head_dim: int                    # H
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_local_theta: float | None = None   # theta of sliding-window layers (else rope_theta)
    rope_scaling: Llama3RopeScaling | None = None
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = True
    attention_bias: bool = False     # bias on q/k/v projections
    o_proj_bias: bool = False        # bias on the attention output projection
    qk_norm: bool = False            # RMSNorm over H on queries and keys
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None   # per block FULL | SLIDING; None = all FULL
    query_pre_attn_scalar: float | None = None   # attention scale = this**-0.5 (else H**-0.5)
    final_logit_softcapping: float | None = None
    hidden_act: str = "silu"         # 'silu' | 'gelu_pytorch_tanh'
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    def __post_init__(self):
        if not self.family:
            raise ValueError("EncoderConfig needs the name of its family (see encoders.families)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.hidden_act not in ("silu", "gelu_pytorch_tanh"):
            raise ValueError(f"hidden_act={self.hidden_act!r} unsupported; use silu or gelu_pytorch_tanh")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers:
                raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers")
            bad = sorted(set(self.layer_types) - {FULL, SLIDING})
            if bad:
                raise ValueError(f"unknown layer types {bad}; use {FULL!r} or {SLIDING!r}")
            if SLIDING in self.layer_types and not self.sliding_window:
                raise ValueError("sliding_attention layers need a positive sliding_window")

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @property
    def sliding_layers(self) -> tuple[bool, ...]:
        """[L] True where the block uses sliding-window attention (and rope_local_theta)."""
        types = self.layer_types or (FULL,) * self.num_layers
        return tuple(t == SLIDING for t in types)

    def replace(self, **changes) -> "EncoderConfig":
        return dataclasses.replace(self, **changes)


# A small config with odd/prime dims for tests; a family's `tiny` overrides adapt it (Family.tiny_config).
TINY = dict(vocab_size=61, hidden_size=44, intermediate_size=97, num_layers=3, num_heads=4, num_kv_heads=2,
            head_dim=10, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=128,
            tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)


# ---------------------------------------------------------------------- helpers for family converters
def check_fields(d: Mapping[str, Any], handled: set[str], ignored: set[str], what: str) -> None:
    """Raise naming every field of `d` that is neither handled nor known to be irrelevant."""
    unknown = sorted(set(d) - set(handled) - set(ignored) - COMMON_IGNORED)
    if unknown:
        raise ValueError(
            f"{what} config has fields this port does not handle: {unknown}. Implement them (and add a "
            f"parity test) or, if they cannot change the forward pass, add them to the family's ignore list.")


def require(d: Mapping[str, Any], key: str, what: str):
    if d.get(key) is None:
        raise ValueError(f"{what} config lacks required field {key!r}")
    return d[key]


def eos_tuple(eos) -> int | tuple[int, ...] | None:
    return tuple(eos) if isinstance(eos, (list, tuple)) else eos


def rope_from_hf(d: Mapping[str, Any], what: str, default_theta: float = 10000.0
                 ) -> tuple[float, Llama3RopeScaling | None]:
    """(theta, scaling) from either transformers<5 fields (`rope_theta`, `rope_scaling`) or the
    transformers 5 `rope_parameters` dict. Only rope_type 'default' and 'llama3' are supported."""
    params = d.get("rope_parameters")
    if params is not None:
        params = dict(params)
        theta = float(params.pop("rope_theta", d.get("rope_theta", default_theta)))
        scaling = params
    else:
        theta = float(d.get("rope_theta", default_theta))
        scaling = dict(d["rope_scaling"]) if d.get("rope_scaling") else {}
    return theta, llama3_scaling(scaling, what)


def llama3_scaling(scaling: Mapping[str, Any], what: str) -> Llama3RopeScaling | None:
    """Parse a rope scaling dict (minus rope_theta); None for the default type, raise for others."""
    scaling = dict(scaling)
    kind = scaling.pop("rope_type", None) or scaling.pop("type", None) or "default"
    scaling.pop("type", None)
    if kind == "default":
        if scaling:
            raise ValueError(f"{what}: default RoPE with unexpected parameters {sorted(scaling)}")
        return None
    if kind != "llama3":
        raise ValueError(f"{what}: rope scaling type {kind!r} is not supported (supported: default, llama3); "
                         f"implement it in base.rope_inv_freq with a parity test")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if k not in scaling]
    extra = sorted(set(scaling) - set(keys))
    if missing or extra:
        raise ValueError(f"{what}: llama3 rope scaling missing {missing} / unexpected {extra}")
    return Llama3RopeScaling(float(scaling["factor"]), float(scaling["low_freq_factor"]),
                             float(scaling["high_freq_factor"]), int(scaling["original_max_position_embeddings"]))


# Fields of llama-like configs that shape the model, read by `decoder_fields`.
DECODER_FIELDS = frozenset({
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling",
    "rope_parameters", "max_position_embeddings", "tie_word_embeddings", "pad_token_id", "bos_token_id",
    "eos_token_id", "hidden_act", "hidden_activation"})


def decoder_fields(d: Mapping[str, Any], what: str, *, tie_default: bool,
                   act_default: str = "silu") -> dict[str, Any]:
    """EncoderConfig kwargs common to all families (dims, norm eps, RoPE, ids, activation)."""
    n = int(require(d, "num_attention_heads", what))
    hidden = int(require(d, "hidden_size", what))
    act = d.get("hidden_activation") or d.get("hidden_act") or act_default
    if act != act_default:
        raise ValueError(f"{what}: activation {act!r} unsupported (expected {act_default!r})")
    theta, scaling = rope_from_hf(d, what)
    return dict(
        vocab_size=int(require(d, "vocab_size", what)), hidden_size=hidden,
        intermediate_size=int(require(d, "intermediate_size", what)),
        num_layers=int(require(d, "num_hidden_layers", what)), num_heads=n,
        num_kv_heads=int(d.get("num_key_value_heads") or n),
        head_dim=int(d.get("head_dim") or hidden // n), rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        rope_theta=theta, rope_scaling=scaling,
        max_position_embeddings=int(require(d, "max_position_embeddings", what)),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", tie_default)), hidden_act=act,
        pad_token_id=d.get("pad_token_id"), bos_token_id=d.get("bos_token_id"),
        eos_token_id=eos_tuple(d.get("eos_token_id")))


def rope_to_hf(theta: float, scaling: Llama3RopeScaling | None) -> dict[str, Any]:
    """transformers 5 `rope_parameters` of one RoPE table (read back by `rope_from_hf`)."""
    if scaling is None:
        return {"rope_type": "default", "rope_theta": theta}
    return {"rope_type": "llama3", "rope_theta": theta, **dataclasses.asdict(scaling)}


def decoder_hf_fields(cfg: EncoderConfig, act_key: str = "hidden_act") -> dict[str, Any]:
    """The transformers fields `decoder_fields` reads, from `cfg` (transformers 5 names)."""
    eos = list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id
    return {"vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
            "head_dim": cfg.head_dim, "rms_norm_eps": cfg.rms_norm_eps,
            "rope_parameters": rope_to_hf(cfg.rope_theta, cfg.rope_scaling),
            "max_position_embeddings": cfg.max_position_embeddings,
            "tie_word_embeddings": cfg.tie_word_embeddings, act_key: cfg.hidden_act,
            "pad_token_id": cfg.pad_token_id, "bos_token_id": cfg.bos_token_id, "eos_token_id": eos}


def require_value(d: Mapping[str, Any], key: str, allowed: tuple, what: str) -> None:
    """Raise unless field `key` is absent or one of `allowed` (a field we accept only when inert)."""
    if key in d and d[key] not in allowed:
        raise ValueError(f"{what}: {key}={d[key]!r} is not supported (supported: {list(allowed)})")


def require_all_full(d: Mapping[str, Any], what: str) -> None:
    """Qwen-style configs: sliding-window attention must be off (layer_types all full attention)."""
    require_value(d, "use_sliding_window", (False, None), what)
    types = d.get("layer_types")
    if types is not None and any(t != FULL for t in types):
        raise ValueError(f"{what}: sliding-window layers {sorted(set(types))} are not supported for this family")
