"""SmolLM2-135M-Instruct through our stack (registry -> assets -> read_gguf -> build_model) vs
transformers' own GGUF loader: identical token ids and per-layer last/mean features.

Tolerance: fp32, max |ours - ref| <= 1e-4 * max |ref| per layer (pooled over prompts); layer L is
compared after the final norm for 'last' (HF's hidden_states[L] is post-norm)."""
import gzip
import json

import jax.numpy as jnp
import numpy as np
import pytest

from prefill_router import assets
from prefill_router.encoders.registry import ENCODERS, load_encoder

RTOL = 1e-4


@pytest.mark.real_weights
@pytest.mark.slow
def test_smollm2_features_match_transformers(shared_data, require_asset):
    import torch
    from transformers import AutoModelForCausalLM
    try:
        enc = load_encoder("smollm2_135m")
    except (RuntimeError, OSError) as e:
        require_asset(f"could not fetch SmolLM2: {e}")
    with gzip.open(shared_data / "routing/llmrouter_dcrouter/train.json.gz", "rt") as f:
        rows = json.load(f)
    prompts = [rows[i]["question"] for i in (0, 1500, 3000)] + ["Compute 12345 * 678 — café ☕?"]
    texts = [enc.tokenizer.render(q) for q in prompts]
    ids, _ = enc.tokenizer.encode_batch(texts)
    path = assets.resolve(ENCODERS["smollm2_135m"].weights)
    from transformers import AutoTokenizer
    ref_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    assert ids == [ref_tok(t, add_special_tokens=False).input_ids for t in texts]
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    T = max(map(len, ids))
    x = np.full((len(ids), T), enc.tokenizer.pad_id, np.int32)
    m = np.zeros_like(x)
    for i, s in enumerate(ids):  # right padding
        x[i, :len(s)], m[i, :len(s)] = s, 1
    out = enc.model(jnp.asarray(x), jnp.asarray(m))
    last, mean = np.array(out.last), np.array(out.mean)
    L = last.shape[0] - 1
    last[L] = np.asarray(enc.model.final_norm_apply(jnp.asarray(last[L])))
    for i, s in enumerate(ids):
        with torch.no_grad():
            hs = torch.stack(ref(torch.tensor([s]), output_hidden_states=True).hidden_states)[:, 0].numpy()
        for l in range(L + 1):
            scale = np.abs(hs[l]).max()
            assert np.abs(last[l, i] - hs[l, -1]).max() <= RTOL * scale, (i, l, "last")
            if l < L:
                assert np.abs(mean[l, i] - hs[l].mean(0)).max() <= RTOL * scale, (i, l, "mean")
