"""Benchmark: the seed ensemble trained with jit(vmap) over seeds vs the same seeds one after another.

    python benchmarks/train_speed.py                          # synthetic N=5000, d=850, K=9, 10 seeds
    python benchmarks/train_speed.py --features feats.npz     # npz with X [N, d], Y [N, K], M [N, K]
    python benchmarks/train_speed.py --n 1000 --max_epochs 20 # quicker
    python benchmarks/train_speed.py --config=configs/default.py  # the default's real training features

Each mode is run twice in one process: the first run includes XLA compilation, the second reuses the
compiled program (the "warm" time). Prints both wall times per mode, the ratio sequential / vmapped
(target >= 3x on an accelerator) and checks that both modes give the same parameters and validation losses.
Note: the vmapped while_loop runs until the slowest seed stops (stopped seeds are carried along unchanged),
while the sequential mode runs each seed only for its own epochs.
"""
from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags, logging

from prefill_router.router import train

_FEATURES = flags.DEFINE_string("features", None, "npz with X [N, d], Y [N, K], M [N, K]; synthetic if unset")
_CONFIG = flags.DEFINE_string("config", None, "pipeline config[:args]: the router design on its real training "
                              "features (target k: mean pooling at relative depth (k+1)/(K+1), router.pca_dim)")
_N = flags.DEFINE_integer("n", 5000, "synthetic rows")
_D = flags.DEFINE_integer("d", 850, "synthetic feature width")
_K = flags.DEFINE_integer("k", 9, "synthetic targets")
_SEEDS = flags.DEFINE_integer("seeds", 10, "number of seeds (42, 43, ...)")
_EPOCHS = flags.DEFINE_integer("max_epochs", 150, "epoch cap")
_REPEATS = flags.DEFINE_integer("repeats", 2, "runs per mode (the first includes compilation)")


def synthetic(n: int, d: int, k: int, seed: int = 0):
    """Features with a decaying spectrum (like PCA blocks) and logistic labels, 5% missing."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) * (1.0 / np.sqrt(1 + np.arange(d) / 20))).astype(np.float32)
    w = rng.normal(size=(d, k)) / np.sqrt(d) * 3.0
    logits = x @ w + rng.normal(size=k)
    y = (rng.random((n, k)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    m = rng.random((n, k)) > 0.05
    y[~m] = np.nan
    return x, y, m


def real_design(spec: str):
    """The per-target router design X [N, K * pca_dim] on a config's real training rows (no probe: target k
    reads mean-pooled layer round((k + 1) / (K + 1) * L)), with Y (NaN where missing) and M."""
    from common import training_data

    from prefill_router import router
    data = training_data(spec)
    enc, K = data.config.encoders[0], len(data.targets)
    specs = [router.BlockSpec(t, enc, round((k + 1) / (K + 1) * data.n_layers), "mean", data.config.router.pca_dim)
             for k, t in enumerate(data.targets)]
    lookup = lambda src: data.features.get(src.pooling, [src.layer])[0][data.rows]
    _, x = router.build_design(lookup, specs, np.arange(len(data.rows)))
    return x, np.where(data.M, data.Y, np.nan).astype(np.float32), data.M


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv):
    del argv
    if _CONFIG.value:
        x, y, m = real_design(_CONFIG.value)
        source = _CONFIG.value
    elif _FEATURES.value:
        data = np.load(_FEATURES.value)
        x, y, m = data["X"], data["Y"], data["M"].astype(bool)
        source = _FEATURES.value
    else:
        x, y, m = synthetic(_N.value, _D.value, _K.value)
        source = "synthetic"
    cfg = train.TrainConfig(seeds=tuple(range(42, 42 + _SEEDS.value)), max_epochs=_EPOCHS.value,
                            keep=min(5, _SEEDS.value))
    print(f"data {source}: X {x.shape}, Y {y.shape}; {len(cfg.seeds)} seeds, <= {cfg.max_epochs} epochs, "
          f"batch {cfg.batch_size}; device {jax.devices()[0].device_kind} x{jax.device_count()}")

    times = {}
    results = {}
    for mode, vectorized in (("vmapped", True), ("sequential", False)):
        runs = []
        for _ in range(_REPEATS.value):
            ens, sec = _timed(lambda: train.train_ensemble(x, y, m, cfg, vectorized=vectorized))
            runs.append(sec)
        times[mode], results[mode] = runs, ens
        print(f"{mode:>10}: incl. compile {runs[0]:8.2f} s | warm {min(runs[1:] or runs):8.2f} s | "
              f"epochs per seed {ens.report.epochs_run.tolist()}")

    warm = {k: min(v[1:] or v) for k, v in times.items()}
    print(f"speed-up sequential/vmapped: warm {warm['sequential'] / warm['vmapped']:.2f}x, "
          f"incl. compile {times['sequential'][0] / times['vmapped'][0]:.2f}x")
    a, b = results["vmapped"], results["sequential"]
    diff = max(float(np.abs(p - q).max()) for p, q in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
    same = a.seeds == b.seeds and np.array_equal(a.report.epochs_run, b.report.epochs_run)
    print(f"same kept seeds and epochs: {same}; max |param diff| {diff:.2e}; "
          f"max |best val diff| {np.abs(a.report.best_val - b.report.best_val).max():.2e}")
    if not same or diff > 1e-4:
        logging.warning("vmapped and sequential results differ beyond float rounding")


if __name__ == "__main__":
    app.run(main)
