"""Encoder test helpers."""
import numpy as np
import pytest

from prefill_router.encoders import families
from prefill_router.encoders.keymap import Transform


def _hf_tensors_of(model) -> dict[str, np.ndarray]:
    """Our parameters -> transformers-named tensors by the family's key map run backwards (rules with a
    layer group are written once per layer). test_encoders_parity checks the result against transformers'
    own state dict, so the loading tests can use it as input."""
    family = families.get(model.config.family)
    params = {"embed": model.embed[...], "final_norm": model.final_norm[...]}
    if model.lm_head is not None:
        params["lm_head"] = model.lm_head[...]
    blocks = model.blocks.arrays()
    out = {}
    for rule in family.key_map:
        if rule.target[0] == "blocks":
            if rule.target[1] not in blocks:
                continue
            stacked = np.asarray(blocks[rule.target[1]])
            layers = [(str(i), stacked[i]) for i in range(stacked.shape[0])]
        elif rule.target[0] in params:
            layers = [(None, np.asarray(params[rule.target[0]]))]
        else:
            continue
        for idx, x in layers:
            if rule.transform is Transform.LINEAR:
                x = x.reshape(x.shape[0], -1).T
            elif rule.transform is Transform.ATTN_O:
                x = x.reshape(-1, x.shape[-1]).T
            elif rule.transform is Transform.RESHAPE:
                x = x.reshape(-1)
            name = rule.pattern.replace(r"(\d+)", idx or "").replace("\\", "")
            out[name] = np.ascontiguousarray(x)
    return out


@pytest.fixture(scope="session")
def hf_tensors_of():
    return _hf_tensors_of
