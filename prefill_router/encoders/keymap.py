"""Declarative transformers-name -> Encoder-parameter mapping with every-key accounting.

A family's key map is a tuple of `Rule(pattern, target, transform)`: `pattern` is a full-match regex
over the HF tensor name; a `(\\d+)` group is the layer index, and then `target` names a stacked
[L, ...] parameter filled one layer at a time. Transforms turn the HF layout into ours; the expected
source shape is derived from the target shape, so every mismatch is reported with both shapes:

    IDENTITY  src = tgt
    LINEAR    torch Linear [out..., in] -> [in, out...]:  src [prod(tgt[1:]), tgt[0]], x.T reshaped
    ATTN_O    o_proj [D, N*H] -> [N, H, D]:               src [tgt[-1], prod(tgt[:-1])], x.T reshaped
    RESHAPE   bias [N*H] -> [N, H]:                      src [prod(tgt)]

`fill_params` collects every problem (unmatched or unused tensor, shape mismatch, duplicate, target
leaf or layer left empty) and raises once, naming the keys. `decoder_key_map` builds the map the
transformers decoder-only families share; each family names only its per-block norms.
"""
import dataclasses
import enum
import math
import re
from typing import Mapping

import numpy as np


class Transform(enum.Enum):
    IDENTITY = "identity"
    LINEAR = "linear"
    ATTN_O = "attn_o"
    RESHAPE = "reshape"


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str                   # full-match regex over the HF name; one (\d+) group = layer index
    target: tuple[str, ...]        # path in nnx.to_pure_dict(state), e.g. ('blocks', 'q')
    transform: Transform = Transform.IDENTITY


_LAYER = r"model\.layers\.(\d+)\."

# Embeddings, final norm, untied head, attention and gated MLP of a transformers decoder-only LM.
# The q/k/v/o biases and q/k norms are optional: a tensor whose target the config lacks is reported
# as an error by `fill_params`.
_DECODER_RULES = (
    Rule(r"model\.embed_tokens\.weight", ("embed",)),
    Rule(r"model\.norm\.weight", ("final_norm",)),
    Rule(r"lm_head\.weight", ("lm_head",), Transform.LINEAR),
    Rule(_LAYER + r"self_attn\.q_proj\.weight", ("blocks", "q"), Transform.LINEAR),
    Rule(_LAYER + r"self_attn\.k_proj\.weight", ("blocks", "k"), Transform.LINEAR),
    Rule(_LAYER + r"self_attn\.v_proj\.weight", ("blocks", "v"), Transform.LINEAR),
    Rule(_LAYER + r"self_attn\.o_proj\.weight", ("blocks", "o"), Transform.ATTN_O),
    Rule(_LAYER + r"self_attn\.q_proj\.bias", ("blocks", "q_bias"), Transform.RESHAPE),
    Rule(_LAYER + r"self_attn\.k_proj\.bias", ("blocks", "k_bias"), Transform.RESHAPE),
    Rule(_LAYER + r"self_attn\.v_proj\.bias", ("blocks", "v_bias"), Transform.RESHAPE),
    Rule(_LAYER + r"self_attn\.o_proj\.bias", ("blocks", "o_bias")),
    Rule(_LAYER + r"self_attn\.q_norm\.weight", ("blocks", "q_norm")),
    Rule(_LAYER + r"self_attn\.k_norm\.weight", ("blocks", "k_norm")),
    Rule(_LAYER + r"mlp\.gate_proj\.weight", ("blocks", "gate"), Transform.LINEAR),
    Rule(_LAYER + r"mlp\.up_proj\.weight", ("blocks", "up"), Transform.LINEAR),
    Rule(_LAYER + r"mlp\.down_proj\.weight", ("blocks", "down"), Transform.LINEAR),
)


def decoder_key_map(block_norms: Mapping[str, str]) -> tuple[Rule, ...]:
    """The shared decoder rules plus `model.layers.<i>.<norm>.weight` -> ('blocks', target) for each
    `norm: target` in `block_norms` (the part that differs between families)."""
    return _DECODER_RULES + tuple(Rule(_LAYER + norm + r"\.weight", ("blocks", target))
                                  for norm, target in block_norms.items())


def source_shape(target_shape: tuple[int, ...], transform: Transform) -> tuple[int, ...]:
    """The HF tensor shape that maps onto `target_shape` (per layer)."""
    t = tuple(target_shape)
    if transform is Transform.LINEAR:
        return (math.prod(t[1:]), t[0])
    if transform is Transform.ATTN_O:
        return (t[-1], math.prod(t[:-1]))
    if transform is Transform.RESHAPE:
        return (math.prod(t),)
    return t


def convert(x: np.ndarray, target_shape: tuple[int, ...], transform: Transform) -> np.ndarray:
    if transform in (Transform.LINEAR, Transform.ATTN_O):
        return x.T.reshape(target_shape)
    return x.reshape(target_shape)


def fill_params(rules: tuple[Rule, ...], ignored: tuple[str, ...], tensors: Mapping[str, np.ndarray],
                targets: Mapping[tuple[str, ...], tuple[tuple[int, ...], bool]], what: str,
                dtype=np.float32) -> dict[tuple[str, ...], np.ndarray]:
    """Map HF tensors onto target leaves.

    tensors: read once each, in name order (a lazy Mapping keeps one source tensor in memory at a time).
    targets: path -> (full shape, stacked) where stacked leaves have a leading layer axis.
    Returns path -> array of the full shape in `dtype` (a numpy or ml_dtypes dtype; values rounded to
    nearest even from float32). Raises ValueError listing all problems.
    """
    compiled = [(re.compile(r.pattern), r) for r in rules]
    ignored_re = [re.compile(p) for p in ignored]
    out: dict[tuple[str, ...], np.ndarray] = {}
    filled: dict[tuple[str, ...], set[int]] = {}
    errors: list[str] = []
    for name in sorted(tensors):
        match = next(((m, r) for c, r in compiled if (m := c.fullmatch(name))), None)
        if match is None:
            if not any(p.fullmatch(name) for p in ignored_re):
                errors.append(f"unexpected tensor {name!r} (no rule maps it and it is not ignored)")
            continue
        m, rule = match
        if rule.target not in targets:
            errors.append(f"tensor {name!r} maps to {'/'.join(rule.target)}, which this config does not have")
            continue
        shape, stacked = targets[rule.target]
        layer_shape = shape[1:] if stacked else shape
        x = np.asarray(tensors[name])
        want = source_shape(layer_shape, rule.transform)
        if tuple(x.shape) != want:
            errors.append(f"tensor {name!r} has shape {tuple(x.shape)}, expected {want} "
                          f"for {'/'.join(rule.target)} {tuple(shape)}")
            continue
        y = convert(x.astype(np.float32, copy=False), layer_shape, rule.transform)
        if stacked:
            layer = int(m.group(1))
            if not 0 <= layer < shape[0]:
                errors.append(f"tensor {name!r}: layer {layer} out of range (config has {shape[0]} layers)")
                continue
            buf = out.setdefault(rule.target, np.empty(shape, dtype))
            seen = filled.setdefault(rule.target, set())
            if layer in seen:
                errors.append(f"tensor {name!r} fills {'/'.join(rule.target)}[{layer}] twice")
            seen.add(layer)
            buf[layer] = y
        else:
            if rule.target in out:
                errors.append(f"tensor {name!r} fills {'/'.join(rule.target)} twice")
            out[rule.target] = y.astype(dtype, copy=False)
    for path, (shape, stacked) in targets.items():
        if path not in out:
            errors.append(f"parameter {'/'.join(path)} {tuple(shape)} has no source tensor")
        elif stacked and len(filled[path]) != shape[0]:
            missing = sorted(set(range(shape[0])) - filled[path])
            errors.append(f"parameter {'/'.join(path)}: no source tensor for layers {missing}")
    if errors:
        raise ValueError(f"{what}: {len(errors)} weight-mapping error(s):\n  " + "\n  ".join(errors))
    return out
