"""EncoderConfig: one frozen, hashable description of a decoder-only encoder LLM.

All supported families (llama, qwen2, qwen3, gemma3) share this config; family differences are
flags (q/k/v bias, q/k RMSNorm, Gemma's sandwich norms, (1 + w) norms, sqrt(D) embedding scale,
GELU-tanh MLP, sliding-window layers with their own RoPE theta, logit soft-capping).

`EncoderConfig.from_hf_config(d)` converts a transformers `config.json` dict. Each family lists the
fields it handles and the fields it knowingly ignores; any other field raises (penzai style), so a
new RoPE variant or attention trick fails loudly instead of converting silently wrong.
"""
import dataclasses
import math
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
    family: str                      # 'llama' | 'qwen2' | 'qwen3' | 'gemma3'
    vocab_size: int                  # V
    hidden_size: int                 # D
    intermediate_size: int           # F
    num_layers: int                  # L
    num_heads: int                   # N
    num_kv_heads: int                # K (N % K == 0)
    head_dim: int                    # H
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_local_theta: float | None = None   # gemma3: theta of sliding-window layers
    rope_scaling: Llama3RopeScaling | None = None
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = True
    attention_bias: bool = False     # bias on q/k/v projections
    o_proj_bias: bool = False        # bias on the attention output projection
    qk_norm: bool = False            # RMSNorm over H on queries and keys (qwen3, gemma3)
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None   # per block FULL | SLIDING; None = all FULL
    query_pre_attn_scalar: float | None = None   # attention scale = this**-0.5 (else H**-0.5)
    final_logit_softcapping: float | None = None
    hidden_act: str = "silu"         # 'silu' | 'gelu_pytorch_tanh'
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    def __post_init__(self):
        if self.family not in ("llama", "qwen2", "qwen3", "gemma3"):
            raise ValueError(f"unknown encoder family {self.family!r}; use llama, qwen2, qwen3 or gemma3")
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

    # Family traits (derived, so they cannot disagree with `family`).
    @property
    def is_gemma(self) -> bool:
        """Gemma numerics: (1 + w) RMSNorm, sandwich norms, sqrt(D) embedding scale."""
        return self.family == "gemma3"

    @property
    def embed_scale(self) -> float | None:
        return math.sqrt(self.hidden_size) if self.is_gemma else None

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

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_hf_config(cls, d: Mapping[str, Any]) -> "EncoderConfig":
        """transformers config dict -> EncoderConfig, dispatching on `model_type`.

        Raises ValueError on an unknown model_type or on any field that the family neither
        handles nor lists as ignorable (the message names the fields).
        """
        from prefill_router.encoders import families  # late: family modules import this module
        model_type = d.get("model_type")
        family = families.family_for_model_type(model_type)
        return family.config_from_hf(dict(d))

    # ------------------------------------------------------------------ presets
    @classmethod
    def smollm2_135m(cls) -> "EncoderConfig":
        """HuggingFaceTB/SmolLM2-135M(-Instruct): 134,515,008 parameters."""
        return cls(family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                   num_heads=9, num_kv_heads=3, head_dim=64, rms_norm_eps=1e-5, rope_theta=100000.0,
                   max_position_embeddings=8192, tie_word_embeddings=True, pad_token_id=2, bos_token_id=1,
                   eos_token_id=2)

    @classmethod
    def llama32_1b(cls) -> "EncoderConfig":
        """meta-llama/Llama-3.2-1B: llama3 RoPE scaling, tied embeddings."""
        return cls(family="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
                   num_heads=32, num_kv_heads=8, head_dim=64, rms_norm_eps=1e-5, rope_theta=500000.0,
                   rope_scaling=Llama3RopeScaling(32.0, 1.0, 4.0, 8192), max_position_embeddings=131072,
                   tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001)

    @classmethod
    def qwen25_05b(cls) -> "EncoderConfig":
        """Qwen2.5(-Coder)-0.5B shape, untied head as in the Coder-Instruct GGUF: 630,167,424 parameters."""
        return cls(family="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24,
                   num_heads=14, num_kv_heads=2, head_dim=64, rms_norm_eps=1e-6, rope_theta=1000000.0,
                   max_position_embeddings=32768, tie_word_embeddings=False, attention_bias=True,
                   pad_token_id=151643, bos_token_id=151643, eos_token_id=151645)

    @classmethod
    def qwen3_06b(cls) -> "EncoderConfig":
        """Qwen/Qwen3-0.6B."""
        return cls(family="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_layers=28,
                   num_heads=16, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                   max_position_embeddings=40960, tie_word_embeddings=True, qk_norm=True,
                   bos_token_id=151643, eos_token_id=151645)

    @classmethod
    def gemma3_270m(cls) -> "EncoderConfig":
        """google/gemma-3-270m: 268,098,176 parameters; 5 sliding (window 512) : 1 global layers."""
        return cls(family="gemma3", vocab_size=262144, hidden_size=640, intermediate_size=2048, num_layers=18,
                   num_heads=4, num_kv_heads=1, head_dim=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
                   rope_local_theta=10000.0, max_position_embeddings=32768, tie_word_embeddings=True,
                   qk_norm=True, sliding_window=512, layer_types=pattern_layer_types(18, 6),
                   query_pre_attn_scalar=256.0, hidden_act="gelu_pytorch_tanh",
                   pad_token_id=0, bos_token_id=2, eos_token_id=1)

    @classmethod
    def tiny(cls, family: str = "llama", **overrides) -> "EncoderConfig":
        """A small config with odd/prime dims for tests; `overrides` replace any field."""
        base = dict(family=family, vocab_size=61, hidden_size=44, intermediate_size=97, num_layers=3,
                    num_heads=4, num_kv_heads=2, head_dim=10, rms_norm_eps=1e-6, rope_theta=10000.0,
                    max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1,
                    eos_token_id=2)
        if family == "qwen2":
            base.update(attention_bias=True, tie_word_embeddings=False)
        elif family == "qwen3":
            base.update(qk_norm=True)
        elif family == "gemma3":
            base.update(qk_norm=True, rope_local_theta=1000.0, sliding_window=4,
                        layer_types=(SLIDING, FULL, SLIDING), query_pre_attn_scalar=12.0,
                        hidden_act="gelu_pytorch_tanh", final_logit_softcapping=30.0)
        base.update(overrides)
        return cls(**base)


def pattern_layer_types(num_layers: int, pattern: int) -> tuple[str, ...]:
    """Gemma's `sliding_window_pattern`: every `pattern`-th block (1-based) is global."""
    return tuple(FULL if (i + 1) % pattern == 0 else SLIDING for i in range(num_layers))


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


def decoder_fields(d: Mapping[str, Any], family: str, what: str, *, tie_default: bool,
                   act_default: str = "silu") -> dict[str, Any]:
    """EncoderConfig kwargs common to all families (dims, norm eps, RoPE, ids, activation)."""
    n = int(require(d, "num_attention_heads", what))
    hidden = int(require(d, "hidden_size", what))
    act = d.get("hidden_activation") or d.get("hidden_act") or act_default
    if act != act_default:
        raise ValueError(f"{what}: activation {act!r} unsupported for {family} (expected {act_default!r})")
    theta, scaling = rope_from_hf(d, what)
    return dict(
        family=family, vocab_size=int(require(d, "vocab_size", what)), hidden_size=hidden,
        intermediate_size=int(require(d, "intermediate_size", what)),
        num_layers=int(require(d, "num_hidden_layers", what)), num_heads=n,
        num_kv_heads=int(d.get("num_key_value_heads") or n),
        head_dim=int(d.get("head_dim") or hidden // n), rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        rope_theta=theta, rope_scaling=scaling,
        max_position_embeddings=int(require(d, "max_position_embeddings", what)),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", tie_default)), hidden_act=act,
        pad_token_id=d.get("pad_token_id"), bos_token_id=d.get("bos_token_id"),
        eos_token_id=eos_tuple(d.get("eos_token_id")))


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
