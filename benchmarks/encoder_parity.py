"""Per-layer parity of our GGUF encoders (registry -> read_gguf -> build_model) vs transformers' GGUF loader.

    python benchmarks/encoder_parity.py [--encoders smollm2_135m,gemma3_270m,qwen25_coder_05b] [--n 8]

For each encoder: 8 real prompts (dcrouter train), rendered with the chat template and tokenised
by our tokenizer; both models get the same ids. Prints per-layer max |ours - ref| of the last-token
and masked-mean features (layer L compared after the final norm, as HF's hidden_states[L]) and the
max over layers relative to the feature scale max|ref|.
"""
import argparse
import gzip
import json

import jax.numpy as jnp
import numpy as np
import torch
from transformers import AutoModelForCausalLM

from prefill_router import assets, paths
from prefill_router.encoders.registry import ENCODERS, load_encoder


def reference_features(enc, ids):
    path = assets.resolve(ENCODERS[enc.name].weights)
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    last, mean = [], []
    for seq in ids:  # one prompt at a time: no padding in the reference
        with torch.no_grad():
            hs = ref(torch.tensor([seq]), output_hidden_states=True).hidden_states
        h = torch.stack(hs)[:, 0].numpy()  # [L+1, T, D]
        last.append(h[:, -1])
        mean.append(h.mean(1))
    return np.stack(last, 1), np.stack(mean, 1)


def final_norm(enc, x):
    """Apply the model's final RMSNorm to [B, D] features (HF's hidden_states[L] is post-norm)."""
    return np.asarray(enc.model.final_norm_apply(jnp.asarray(x)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--encoders", default="smollm2_135m,gemma3_270m,qwen25_coder_05b")
    p.add_argument("--n", type=int, default=8)
    args = p.parse_args()
    with gzip.open(paths.data_dir() / "routing/llmrouter_dcrouter/train.json.gz", "rt") as f:
        rows = json.load(f)
    prompts = [rows[i * (len(rows) // args.n)]["question"] for i in range(args.n)]
    for name in args.encoders.split(","):
        enc = load_encoder(name)
        ids, _ = enc.tokenizer.encode_batch([enc.tokenizer.render(q) for q in prompts], max_length=512)
        T = max(map(len, ids))
        x = np.full((len(ids), T), enc.tokenizer.pad_id, np.int32)
        m = np.zeros((len(ids), T), np.int32)
        for i, s in enumerate(ids):  # left padding
            x[i, T - len(s):], m[i, T - len(s):] = s, 1
        out = enc.model(jnp.asarray(x), jnp.asarray(m))
        last, mean = np.array(out.last), np.array(out.mean)
        r_last, r_mean = reference_features(enc, ids)
        L = last.shape[0] - 1
        last[L] = final_norm(enc, last[L])
        # the masked mean of the normed stream is not the norm of the mean: compare layer L 'last' only
        print(f"== {name}: {len(ids)} prompts, {sum(map(len, ids))} tokens, L={L}")
        print(" layer  max|d last|  max|d mean|  scale")
        worst = 0.0
        for l in range(L + 1):
            dl = np.abs(last[l] - r_last[l]).max()
            dm = np.abs(mean[l] - r_mean[l]).max() if l < L else float("nan")
            scale = np.abs(r_last[l]).max()
            worst = max(worst, dl / scale, (dm / np.abs(r_mean[l]).max()) if l < L else 0.0)
            print(f" {l:5d}  {dl:11.3e}  {dm:11.3e}  {scale:8.2f}")
        print(f" max over layers of max|d| / max|ref| = {worst:.2e}")


if __name__ == "__main__":
    main()
