"""Benchmark: our 10-seed SharedTrunkNet ensemble vs the PyTorch reference loop (seed after seed), in one process.

    python benchmarks/train_speed.py                                 # both synthetic designs below, 3 rounds
    python benchmarks/train_speed.py --shapes=default --repeats=5
    python benchmarks/train_speed.py --config=configs/default.py     # the router design on real training features
    python benchmarks/train_speed.py --features feats.npz            # npz with X [N, d], Y [N, K], M [N, K]

Designs (synthetic features with a decaying spectrum, logistic labels, 5% missing): ``default`` N=600, d=300,
K=3 (the default run's trunk) and ``llmrouter`` N=4000, d=900, K=9 (LLMRouter: 9 targets x PCA-100 blocks).

Peer: ``train_torch_reference.py`` (mini-batches of 512, Adam with coupled weight decay, per-epoch
validation, early stopping with patience 15, best weights restored), run with 1 thread and with torch's
default thread count (on a shared 2-core CPU the OpenMP pool's spinning makes more threads slower).
First a parity check: the torch recipe and ours from the same initial weights, dropout off, on the same
batches, must end with the same weights. Then ``--repeats`` rounds, each timing every mode once in a
rotated order (the machine is shared, so modes are interleaved and compared round by round). Ours is timed
warm (its compile is printed separately; the timed rounds must compile nothing, counted by jax.monitoring).
Printed: wall times (median, min) and process CPU times per mode, the speed-up = median over rounds of
torch / ours (wall; and CPU time, which a crowded machine distorts less), and the
validation loss (inner-split BCE) of the kept seeds (and of all seeds) of both, with the difference of means and its standard
error (the inner splits differ, so only agreement within noise is expected).
Also printed: each mode's useful matmul GFLOP/s (``useful_gflop`` of the epochs it ran / its median wall) beside
the rate of the step's largest matmul alone in JAX and in torch: how close each recipe runs to this CPU's ceiling.
Second line: ours (the default layout: on a CPU with >= 2 cores, one program call per seed, as many seeds at
once as cores) vs the other layouts of the same math: all seeds one after another inside one program
(``workers=0``), vmapped (``seed_batch=S``) and one host call per seed, one after another (``workers=1``);
warm, one run each per round.
"""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from absl import app, flags

import train_torch_reference as ref
from prefill_router.router import model as model_lib
from prefill_router.router import train

_SHAPES = {"default": (600, 300, 3), "llmrouter": (4000, 900, 9)}
_SHAPES_FLAG = flags.DEFINE_list("shapes", ["default", "llmrouter"], f"synthetic designs: {list(_SHAPES)}")
_FEATURES = flags.DEFINE_string("features", None, "npz with X [N, d], Y [N, K], M [N, K] (replaces --shapes)")
_CONFIG = flags.DEFINE_string("config", None, "pipeline config[:args]: the router design on its real training "
                              "features (target k: mean pooling at relative depth (k+1)/(K+1), router.pca_dim)")
_SEEDS = flags.DEFINE_integer("seeds", 10, "number of seeds (42, 43, ...)")
_EPOCHS = flags.DEFINE_integer("max_epochs", 150, "epoch cap")
_REPEATS = flags.DEFINE_integer("repeats", 3, "interleaved rounds (every mode timed once per round)")
_TORCH_THREADS = flags.DEFINE_list("torch_threads", ["1", "0"], "torch thread counts to run (0: torch's default)")
_SECOND = flags.DEFINE_bool("second_line", True, "also time our other seed layouts (in-program, vmapped, host-sequential)")

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


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


def parity(x, y, m, cfg: train.TrainConfig, steps: int = 4) -> tuple[float, float, float]:
    """Both recipes from one init, dropout off, ``steps`` Adam steps on the same batches: (max |weight diff|,
    share of weights differing by > 1e-5, max |logit diff| on the first 512 rows). Adam divides by
    sqrt(v) + 1e-8, so a weight whose gradient is ~1e-8 can move by up to lr on float rounding alone:
    compare the share and the logits, not only the max."""
    trunk = model_lib.TrunkConfig(x.shape[1], y.shape[1], cfg.hidden, tuple(0.0 for _ in cfg.dropout))
    graphdef, params = model_lib.init_params(trunk, jax.random.PRNGKey(0))
    yy, mm = np.where(m, np.nan_to_num(y), 0.0).astype(np.float32), m.astype(np.float32)
    batches = [np.arange(i * 97, i * 97 + min(cfg.batch_size, len(x) - i * 97)) % len(x) for i in range(steps)]
    tx = train._optimizer(cfg)
    opt_state = tx.init(params)
    loss = lambda p, b: model_lib.masked_bce(model_lib.apply(graphdef, p, x[b]), yy[b], mm[b])
    for b in batches:
        updates, opt_state = tx.update(jax.grad(loss)(params, b), opt_state, params)
        params = optax.apply_updates(params, updates)
    net = ref.trunk(x.shape[1], y.shape[1], cfg)
    ref.load_jax_params(net, model_lib.init_params(trunk, jax.random.PRNGKey(0))[1])
    net.eval()  # dropout off, as in the JAX trunk built with rates 0
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    xt, yt, mt = (torch.from_numpy(a) for a in (x, yy, mm))
    for b in batches:
        opt.zero_grad()
        ref.masked_bce(net(xt[b]), yt[b], mt[b]).backward()
        opt.step()
    linears = [mod for mod in net if isinstance(mod, torch.nn.Linear)]
    diffs = np.concatenate([np.concatenate([np.abs(lin.weight.detach().numpy().T
                                                   - np.asarray(params["layers"][i]["kernel"])).ravel(),
                                            np.abs(lin.bias.detach().numpy() - np.asarray(params["layers"][i]["bias"]))])
                            for i, lin in enumerate(linears)])
    with torch.no_grad():
        logits = net(xt[:512]).numpy()
    return float(diffs.max()), float(np.mean(diffs > 1e-5)), float(np.abs(
        logits - np.asarray(model_lib.apply(graphdef, params, x[:512]))).max())


def useful_gflop(d_in: int, k: int, cfg: train.TrainConfig, n_rows: int, epochs) -> float:
    """Matmul GFLOP a recipe needs for the epochs run (summed over seeds): per epoch every inner-training row
    takes a forward (2·Σ in·out), weight gradients (the same) and input gradients below the first layer, and
    every validation row a forward. Padding rows, activations and the optimizer are not counted."""
    widths = [d_in, *cfg.hidden, k]
    macs = [a * b for a, b in zip(widths[:-1], widths[1:])]
    n_val = math.ceil(cfg.val_fraction * n_rows)
    per_epoch = (n_rows - n_val) * 2 * (2 * sum(macs) + sum(macs[1:])) + n_val * 2 * sum(macs)
    return per_epoch * float(np.sum(epochs)) / 1e9


def matmul_rates(d_in: int, batch: int, width: int, reps: int = 200) -> dict[str, float]:
    """GFLOP/s of the step's largest matmul, [batch, d_in] x [d_in, width] fp32, in JAX and in torch (its current
    thread count): the attainable rate of the recipe's dominant operation on this CPU."""
    a = np.random.default_rng(0).normal(size=(batch, d_in)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(d_in, width)).astype(np.float32)
    f = jax.jit(lambda u, v: u @ v)
    aj, bj = jnp.asarray(a), jnp.asarray(b)
    f(aj, bj).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(aj, bj)
    out.block_until_ready()
    ours = time.perf_counter() - t0
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    torch.mm(at, bt)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(at, bt)
    theirs = time.perf_counter() - t0
    flop = 2.0 * batch * d_in * width * reps / 1e9
    return {"jax": flop / ours, "torch": flop / theirs}


def _epochs_run(result) -> np.ndarray:
    """Epochs per seed of a mode's result: ours (an Ensemble with a report) or the torch reference's dict."""
    return np.asarray(result.report.epochs_run if hasattr(result, "report") else result["epochs_run"])


def _stats(v) -> str:
    v = np.asarray(v, np.float64)
    return f"median {np.median(v):7.2f} s  min {v.min():7.2f} s"


def _val_diff(which: str, ours, name: str, theirs) -> str:
    """Mean inner-validation BCE of both and their difference in standard errors (Welch)."""
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return (f"val BCE, {which}: ours {a.mean():.4f}, {name} {b.mean():.4f}; ours - torch {a.mean() - b.mean():+.4f} "
            f"= {(a.mean() - b.mean()) / se:+.1f} se")


def bench(label: str, x, y, m, cfg: train.TrainConfig) -> None:
    print(f"\n=== {label}: X {x.shape}, K={y.shape[1]}, {len(cfg.seeds)} seeds, <= {cfg.max_epochs} epochs, "
          f"batch {cfg.batch_size}")
    w_max, w_share, logit_max = parity(x, y, m, cfg)
    print(f"parity (torch recipe vs ours, same init, dropout off, 4 Adam steps on the same batches): max |weight "
          f"diff| {w_max:.1e} ({w_share:.1e} of weights > 1e-5), max |logit diff| {logit_max:.1e}")
    compiles = []

    def listen(event, secs, **kw):
        if event == COMPILE_EVENT:
            compiles.append(secs)

    jax.monitoring.register_event_duration_secs_listener(listen)
    t0 = time.perf_counter()
    train.train_ensemble(x, y, m, cfg)
    print(f"ours, first call: {time.perf_counter() - t0:.2f} s incl. {len(compiles)} compiles ({sum(compiles):.2f} s)")
    default_threads = torch.get_num_threads()
    modes = {"ours": lambda: train.train_ensemble(x, y, m, cfg)}
    for t in (int(v) for v in _TORCH_THREADS.value):
        modes[f"torch {t or default_threads} thr"] = lambda t=t: (torch.set_num_threads(t or default_threads),
                                                                  ref.train_seeds(x, y, m, cfg))[1]
    if _SECOND.value:
        layouts = {"ours in-program": dict(workers=0), "ours vmapped": dict(seed_batch=len(cfg.seeds)),
                   "ours host-seq": dict(workers=1)}
        for name, layout in layouts.items():
            train.train_ensemble(x, y, m, cfg, **layout)  # compile outside the timed rounds
            modes[name] = lambda layout=layout: train.train_ensemble(x, y, m, cfg, **layout)
    n_compiles = len(compiles)
    names = list(modes)
    wall, cpu = {k: [] for k in names}, {k: [] for k in names}
    out = {}
    for r in range(_REPEATS.value):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            t0, c0 = time.perf_counter(), time.process_time()
            out[k] = modes[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
        print(f"round {r + 1}: " + ", ".join(f"{k} {wall[k][-1]:.2f} s (cpu {cpu[k][-1]:.2f})" for k in names),
              flush=True)
    jax.monitoring.unregister_event_duration_listener(listen)
    torch.set_num_threads(default_threads)
    print(f"compiles during the timed rounds: {len(compiles) - n_compiles}")
    for k in names:
        epochs = _epochs_run(out[k]).tolist()
        print(f"{k:>14}: {_stats(wall[k])} | cpu median {np.median(cpu[k]):7.2f} s | epochs per seed {epochs}")
    for k in names[1:]:
        ratio = np.asarray(wall[k]) / np.asarray(wall["ours"])
        cpu_ratio = np.asarray(cpu[k]) / np.asarray(cpu["ours"])
        print(f"speed-up {k} / ours: wall {np.median(ratio):.2f}x (rounds {np.round(ratio, 2).tolist()}), "
              f"cpu time {np.median(cpu_ratio):.2f}x")
    rates = matmul_rates(x.shape[1], cfg.batch_size, cfg.hidden[0])
    print(f"largest matmul alone ([{cfg.batch_size}, {x.shape[1]}] x [{x.shape[1]}, {cfg.hidden[0]}] fp32): jax "
          f"{rates['jax']:.0f} GFLOP/s, torch {rates['torch']:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
    for k in names:
        gflop = useful_gflop(x.shape[1], y.shape[1], cfg, len(x), _epochs_run(out[k]))
        print(f"{k:>14}: {gflop:.0f} GFLOP of matmuls in the median wall -> {gflop / np.median(wall[k]):.0f} "
              f"GFLOP/s useful")
    ours_val = {"kept": out["ours"].val_losses, "all": out["ours"].report.best_val}
    for k in names:
        if k.startswith("torch"):
            for which, theirs in (("kept", out[k]["kept_val"]), ("all", out[k]["best_val"])):
                print(_val_diff(f"{which} seeds", ours_val[which], f"{k}", theirs))


def main(argv):
    del argv
    cfg = train.TrainConfig(seeds=tuple(range(42, 42 + _SEEDS.value)), max_epochs=_EPOCHS.value,
                            keep=min(5, _SEEDS.value))
    workers = train.default_workers()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__} "
          f"(default {torch.get_num_threads()} threads); ours trains "
          f"{f'{workers} seeds at once' if workers else 'all seeds in one program'}")
    if _CONFIG.value:
        bench(_CONFIG.value, *real_design(_CONFIG.value), cfg)
    elif _FEATURES.value:
        data = np.load(_FEATURES.value)
        bench(_FEATURES.value, data["X"], data["Y"], data["M"].astype(bool), cfg)
    else:
        for name in _SHAPES_FLAG.value:
            if name not in _SHAPES:
                raise app.UsageError(f"unknown shape {name!r}; use one of {list(_SHAPES)}")
            bench(f"synthetic {name}", *synthetic(*_SHAPES[name]), cfg)


if __name__ == "__main__":
    app.run(main)
