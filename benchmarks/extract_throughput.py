"""Prefill feature extraction throughput: ours vs HF transformers (PyTorch) on the same prompts, one process.

    python benchmarks/extract_throughput.py [--num_prompts=256] [--encoder=smollm2_135m] [--dtypes=float32,bfloat16]
                                            [--hf_dtypes=float32,bfloat16]
    python benchmarks/extract_throughput.py --mfu --peak_tflops=989   # on an accelerator (see --mfu)

Measures, on the first `num_prompts` questions of llmrouter_dcrouter/train.json.gz rendered with the
encoder's chat template (identical token ids for every contender):
  * ours: `extract_features` (jit, length-bucketed) in each of `dtypes`, the encoder loaded as the pipeline
    loads it (`load_encoder(name, dtype=, head=False)`: bfloat16 = bf16 weights and stream, fp32 accumulation
    in every product); tokens/s without and with compile time; for each dtype after the first, the speed
    ratio and the features' relative error against the first (per layer, median over prompts);
  * HF transformers (PyTorch) in each of `hf_dtypes` (float32 is what a user runs on CPU by default; bfloat16
    where torch runs it on this CPU, else a note), each with
    (a) naive batching, fixed batch `hf_batch` in the original order, right-padded to the batch max, and
    (b) the same length-bucketed batches as ours;
  * a jnp fp32 matmul probe as the machine's FLOP/s peak: the best of square n^3 products (n in `matmul_n`)
    and the encoder's own widest product [batch_tokens, D] x [D, F].
Both HF variants run `output_hidden_states=True, use_cache=False` and pool last/mean per layer in fp32.
Every ours / HF ratio is printed (RATIO lines); the target is ours / HF float32 naive >= 2.

--mfu (instead of the above): model FLOPs utilisation of a random-init `mfu_preset` model (default the
Qwen2.5-0.5B shape) in bf16 on JAX's default device: fixed [mfu_batch, mfu_length] batches of random tokens
through the same runner as extraction, FLOPs counted as below (every token real), divided by `peak_tflops`
(the device's dense bf16 peak, which JAX cannot query; e.g. 989 for an H100/H200 SXM).

Achieved FLOP/s (useful work on real tokens, no padding, causal attention):
    FLOPs = 2 * P_ne * N_tok + sum_i 2 * L * n_heads * head_dim * n_i^2
where P_ne = non-embedding parameters (the decoder blocks), N_tok = sum_i n_i real tokens, and the second
term counts QK^T and AV (2 matmuls x 2 FLOPs x n_i^2 / 2 causal pairs x heads x head_dim) per layer.
"""
from __future__ import annotations

import gzip
import json
import os
import pathlib
import tempfile
import time

from absl import app, flags, logging

flags.DEFINE_integer("num_prompts", 256, "prompts from the head of train.json.gz")
flags.DEFINE_string("encoder", "smollm2_135m", "load_encoder name, e.g. smollm2_135m or gguf:/path/file.gguf")
flags.DEFINE_integer("batch_tokens", 2048, "token budget per batch for ours and HF (b) (configs/common.py default)")
flags.DEFINE_integer("hf_batch", 4, "fixed batch size of HF (a)")
flags.DEFINE_integer("max_length", 2048, "truncation length")
flags.DEFINE_list("matmul_n", ["1024", "2048", "4096"], "square matmul probe sizes (the best one counts)")
flags.DEFINE_integer("parity_prompts", 4, "prompts on which ours is compared with HF (max abs diff)")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes of ours; the first is compared with HF")
flags.DEFINE_list("hf_dtypes", ["float32", "bfloat16"], "torch dtypes of the HF contenders (skipped with a note "
                  "where torch cannot run one on this CPU)")
flags.DEFINE_list("hf_variants", ["naive", "bucketed"], "HF batchings to time: naive (a) and/or bucketed (b)")
flags.DEFINE_bool("mfu", False, "measure model FLOPs utilisation on the default device instead (see above)")
flags.DEFINE_string("mfu_preset", "qwen25_05b", "encoder preset whose shape the random model takes")
flags.DEFINE_float("peak_tflops", 0.0, "--mfu: the device's dense bf16 peak in TFLOP/s")
flags.DEFINE_integer("mfu_batch", 32, "--mfu: batch rows")
flags.DEFINE_integer("mfu_length", 1024, "--mfu: tokens per row")
flags.DEFINE_integer("mfu_steps", 10, "--mfu: timed batches (after one warm-up)")
F = flags.FLAGS


def _prompts(n: int) -> list[str]:
    from prefill_router import paths
    rows = json.load(gzip.open(paths.require_data_file("routing/llmrouter_dcrouter/train.json.gz")))
    return [r["question"] for r in rows[:n]]


def _load(name: str, dtype: str):
    """(enc, hf_dir, hf_gguf_file): our encoder as extraction loads it (parameters in `dtype`, no untied LM head)
    and where HF loads the same weights from."""
    from prefill_router import assets
    from prefill_router.encoders.registry import load_encoder
    enc = load_encoder(name, dtype=dtype, head=False)
    src = assets.resolve(enc.spec.weights)
    return enc, str(src.parent if src.is_file() else src), (src.name if src.is_file() else None)


def _hf_run(model, ids_list, batches, pad_id, num_layers):
    """Runs HF over the given [(indices, B, T)] batches (right padding); -> (last, mean) [L+1, N, D], seconds."""
    import numpy as np
    import torch
    n, d = len(ids_list), model.config.hidden_size
    last = np.zeros((num_layers + 1, n, d), np.float32)
    mean = np.zeros_like(last)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for idx, b, t in batches:
            ids = torch.full((b, t), pad_id, dtype=torch.long)
            mask = torch.zeros((b, t), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, :len(ids_list[i])] = torch.tensor(ids_list[i])
                mask[r, :len(ids_list[i])] = 1
            mask[len(idx):, 0] = 1
            hs = torch.stack(model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                   use_cache=False).hidden_states).float()      # [L+1, B, T, D]
            m = mask.float()[None, :, :, None]
            mean_b = (hs * m).sum(2) / m.sum(2)
            last_b = hs[:, torch.arange(b), mask.sum(1) - 1]
            last[:, idx] = last_b[:, :len(idx)].numpy()
            mean[:, idx] = mean_b[:, :len(idx)].numpy()
    return last, mean, time.perf_counter() - t0


def _matmul_flops(m: int, k: int, n: int, dtype: str = "float32") -> float:
    """FLOP/s of a jitted [m, k] x [k, n] product in `dtype` with fp32 accumulation (best of 5 after a warm-up)."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best


def _flops(cfg, p_ne: int, lengths) -> float:
    """2 * P_ne * N_tok + sum_i 2 * L * heads * head_dim * n_i^2 (see the module docstring)."""
    return 2 * p_ne * float(sum(lengths)) + sum(2 * cfg.num_layers * cfg.num_heads * cfg.head_dim * float(n) ** 2
                                                for n in lengths)


def _non_embedding_params(model) -> int:
    import jax
    import numpy as np
    from flax import nnx
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model.blocks)))


def _mfu() -> None:
    import dataclasses
    import jax
    import jax.numpy as jnp
    import numpy as np
    from prefill_router.encoders import preset_config, random_model
    from prefill_router.features import distributed, extract
    if F.peak_tflops <= 0:
        raise SystemExit("--mfu needs --peak_tflops=<the device's dense bf16 peak>, e.g. 989 for an H100/H200 SXM")
    cfg = preset_config(F.mfu_preset)
    model = random_model(cfg.family, 0, jnp.bfloat16, **{f.name: getattr(cfg, f.name)
                                                          for f in dataclasses.fields(cfg) if f.name != "family"})
    runner = extract.encoder_runner(model, distributed.local_data_mesh(), jnp.bfloat16, None, False)
    b, t = F.mfu_batch, F.mfu_length
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (b, t), dtype=np.int32)
    mask = np.ones((b, t), np.int32)
    jax.block_until_ready(runner(ids, mask))
    t0 = time.perf_counter()
    for _ in range(F.mfu_steps):
        out = runner(ids, mask)
    jax.block_until_ready(out)
    seconds = (time.perf_counter() - t0) / F.mfu_steps
    achieved = _flops(cfg, _non_embedding_params(model), [t] * b) / seconds
    print(f"{F.mfu_preset} shape, random init, bf16, [{b}, {t}] batches on {jax.devices()[0].device_kind} "
          f"({len(jax.devices())} device(s)): {seconds * 1e3:.1f} ms per batch (compile {runner.compile_s:.1f}s "
          f"excluded), {b * t / seconds:.0f} tokens/s, {achieved / 1e12:.3g} TFLOP/s")
    print(f"MFU = {achieved / 1e12:.3g} / {F.peak_tflops:.3g} TFLOP/s = {achieved / (F.peak_tflops * 1e12):.1%} "
          f"(target >= 40%)")


def _hf_contender(hf_dir, hf_file, dtype: str, ids_list, batchings: dict, pad, num_layers):
    """HF in `dtype` over each of `batchings` {variant: batches}: ({variant: seconds}, last, mean of the last
    variant), or the error text when torch cannot run that dtype here."""
    import torch
    from transformers import AutoModelForCausalLM
    try:
        hf = AutoModelForCausalLM.from_pretrained(hf_dir, gguf_file=hf_file, dtype=getattr(torch, dtype))
        hf.eval()
        _hf_run(hf, ids_list, next(iter(batchings.values()))[:1], pad, num_layers)  # warm-up
    except (RuntimeError, TypeError) as e:  # an unsupported dtype/kernel on this CPU
        return f"{type(e).__name__}: {e}"
    seconds = {}
    for variant, batches in batchings.items():
        last, mean, seconds[variant] = _hf_run(hf, ids_list, batches, pad, num_layers)
    return seconds, last, mean


def main(argv):
    del argv
    if F.mfu:
        return _mfu()
    import jax
    import numpy as np
    import torch
    from prefill_router.features import bucketing, extract

    cores = os.cpu_count()
    torch.set_num_threads(cores)
    logging.set_verbosity(logging.WARNING)
    prompts = _prompts(F.num_prompts)

    # ---- ours, in each dtype, loaded as the pipeline loads it (parameters in that dtype, no untied LM head)
    ours = {}
    for dtype in F.dtypes:
        enc, hf_dir, hf_file = _load(F.encoder, dtype)
        if not ours:
            cfg, tokenizer, p_ne = enc.model.config, enc.tokenizer, _non_embedding_params(enc.model)
            ids_list, _ = tokenizer.encode_batch([tokenizer.render(p, {}) for p in prompts], max_length=F.max_length)
            lengths = np.asarray([len(t) for t in ids_list])
            n_tok = int(lengths.sum())
            print(f"{len(prompts)} prompts, {n_tok} tokens (mean {lengths.mean():.1f}, max {lengths.max()}), "
                  f"{cores} cores, jax devices {jax.devices()}")
        with tempfile.TemporaryDirectory() as store:
            fs = extract.extract_features(enc, prompts, store_dir=store, batch_tokens=F.batch_tokens,
                                          max_length=F.max_length, dtype=dtype, progress=False)
            ours[dtype] = (fs.stats, fs.get("last"), fs.get("mean"))
        del enc, fs   # one encoder in memory at a time
        st = ours[dtype][0]
        with_compile = n_tok / (st["compute_s"] + st["compile_s"])
        print(f"ours {dtype}: {st['tokens_per_s']:.0f} tokens/s ({st['compute_s']:.1f}s, compile "
              f"{st['compile_s']:.1f}s excluded; {with_compile:.0f} tokens/s with it), padding efficiency "
              f"{st['padding_efficiency']:.3f}")
    ref = F.dtypes[0]
    ours_stats, ours_last, ours_mean = ours[ref]
    ours_tps = ours_stats["tokens_per_s"]
    for dtype in F.dtypes[1:]:
        st, last, mean = ours[dtype]
        errs = {name: np.median(np.linalg.norm(x - r, axis=-1) / np.linalg.norm(r, axis=-1), axis=1)
                for name, x, r in (("last", last, ours_last), ("mean", mean, ours_mean))}
        print(f"ours {dtype} / {ref} = {st['tokens_per_s'] / ours_tps:.2f}x; relative error per layer (median over "
              f"prompts): last {errs['last'].min():.4f}..{errs['last'].max():.4f}, mean "
              f"{errs['mean'].min():.4f}..{errs['mean'].max():.4f}")

    # ---- HF transformers (PyTorch) in each of hf_dtypes
    pad = tokenizer.pad_id
    naive = [(list(range(i, min(i + F.hf_batch, len(prompts)))), min(F.hf_batch, len(prompts) - i),
              int(lengths[i:i + F.hf_batch].max())) for i in range(0, len(prompts), F.hf_batch)]
    plan = bucketing.plan_batches(lengths, batch_tokens=F.batch_tokens, max_length=F.max_length)
    bucketed = [(b.indices.tolist(), b.batch_size, b.length) for b in plan.batches]
    naive_eff = n_tok / sum(b * t for _, b, t in naive)
    batchings = {v: {"naive": naive, "bucketed": bucketed}[v] for v in F.hf_variants}
    hf_tps = {}   # (hf dtype, 'naive' | 'bucketed') -> tokens/s
    for hdt in F.hf_dtypes:
        run = _hf_contender(hf_dir, hf_file, hdt, ids_list, batchings, pad, cfg.num_layers)
        if isinstance(run, str):
            print(f"HF {hdt}: not run on this CPU ({run})")
            continue
        seconds, hf_last, hf_mean = run
        for variant, sec in seconds.items():
            hf_tps[hdt, variant] = n_tok / sec
            how = (f"(a) naive batch {F.hf_batch}, padding eff {naive_eff:.3f}" if variant == "naive"
                   else "(b) bucketed like ours")
            print(f"HF {hdt} {how}: {n_tok / sec:.0f} tokens/s ({sec:.1f}s)")
        k = min(F.parity_prompts, len(prompts))
        layers = slice(0, cfg.num_layers)  # HF's last entry is after the final norm; ours is before
        ref_dtype = ref if hdt == "float32" or hdt not in ours else hdt
        o_last, o_mean = ours[ref_dtype][1], ours[ref_dtype][2]
        diff = max(np.abs(o_last[layers, :k] - hf_last[layers, :k]).max(),
                   np.abs(o_mean[layers, :k] - hf_mean[layers, :k]).max())
        scale = np.abs(hf_mean[layers, :k]).max()
        print(f"parity ours {ref_dtype} vs HF {hdt} on {k} prompts, layers 0..{cfg.num_layers - 1}: max abs diff "
              f"{diff:.2e} (max |h| {scale:.2e})")

    # ---- FLOP/s
    shapes = [(int(n), int(n), int(n)) for n in F.matmul_n] + [(F.batch_tokens, cfg.hidden_size,
                                                                    cfg.intermediate_size)]
    flops = _flops(cfg, p_ne, lengths)
    for dtype in F.dtypes:
        probes = {shape: _matmul_flops(*shape, dtype) for shape in shapes}
        peak = max(probes.values())
        achieved = flops / ours[dtype][0]["compute_s"]
        print(f"matmul probe {dtype} (fp32 accumulation): "
              + ", ".join(f"{m}x{k}x{n} {v / 1e9:.1f}" for (m, k, n), v in probes.items())
              + f" GFLOP/s -> peak {peak / 1e9:.1f} GFLOP/s")
        print(f"ours {dtype}: FLOPs=2*P_ne*N_tok + sum_i 2*L*heads*head_dim*n_i^2 = {flops / 1e12:.3f} T -> "
              f"{achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.1%} of the {dtype} matmul probe")
    for dtype in F.dtypes:
        st = ours[dtype][0]
        tps, with_compile = st["tokens_per_s"], n_tok / (st["compute_s"] + st["compile_s"])
        for (hdt, variant), peer in hf_tps.items():
            target = " (target >= 2)" if (hdt, variant) == ("float32", "naive") else ""
            print(f"RATIO ours {dtype} / HF {hdt} {variant} = {tps / peer:.2f}x{target}; with compile time "
                  f"counted: {with_compile / peer:.2f}x")
    print("(HF float32 is its CPU default; compilation is paid once per shape and amortised over larger runs)")


if __name__ == "__main__":
    app.run(main)
