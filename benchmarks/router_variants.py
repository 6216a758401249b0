"""Ablation (issue #14 item 3): SharedTrunkNet variants against the task lookup on the LLMRouter pool.

    PYTHONPATH=. python benchmarks/router_variants.py --repeats 3

Data: `configs/llmrouter_pool.py:encoders=smollm2_135m,max_train=1000` (the seed-0 1,000-train / 500-test
subsample; SmolLM2 features from the store). Layers: per target, argmax over (layer, pooling) of Fisher J on
training rows (standardise -> PCA 64 -> J = Δμᵀ(S_W + εI)⁻¹Δμ, ε = 1e-3·tr(S_W)/64), computed here in NumPy
float64 because the JAX probe stage crawled on the shared CPU when this ran. Every variant shares those blocks,
the trunk recipe and the seeds (config.seed = repeat index); each repeat is scored against the task lookup
with a paired bootstrap (B = 1000).

Variants: base (paper recipe); offset (logits += logit of the task prior: out-of-fold on training rows,
full-training prior on test, so the trunk learns within-task residuals); sentence (+ a MiniLM block, PCA 100);
rank (BCE + 0.5 x within-prompt pairwise logistic ranking loss over observed (correct, wrong) target pairs);
offset+sentence. Measured 2026-12-02 (3 repeats; the README lists the table): no variant beat base, so none
was kept in the library.
"""
from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from common import load_config
from prefill_router import data as data_lib
from prefill_router import fileio
from prefill_router import router as router_lib
from prefill_router import stages
from prefill_router.baselines import sentence, task_prior
from prefill_router.evaluation import report as report_lib
from prefill_router.probes.select import LayerChoice
from prefill_router.router import model as model_lib
from prefill_router.router import train as train_lib
from prefill_router.stages import controls as controls_lib
from prefill_router.stages.features import FeatureLookup

METRICS = ("router_acc", "gap_captured_pct", "auc_mean", "within_task_auc_mean", "disagree_router_acc", "p_auccc",
           "aiq", "cost_savings_price_pct")
PAIRED = ("router_acc", "auc_mean", "within_task_auc_mean")


def fisher_choices(feats: dict, ds, train, pca: int = 64, shrink: float = 1e-3) -> list:
    """Per target, the (layer, pooling) of maximal Fisher J on training rows (NumPy float64)."""
    (encoder, (fs, n_layers)), = feats.items()
    best = {}
    for pooling in ("last", "mean"):
        stack = fs.get(pooling)[:, train].astype(np.float64)
        for layer, x in enumerate(stack):
            x = (x - x.mean(0)) / (x.std(0) + 1e-8)
            z = x @ np.linalg.svd(x, full_matrices=False)[2][:pca].T  # [n, k], k = min(pca, D, n)
            for k, target in enumerate(ds.targets):
                observed = ds.mask[train, k]
                y, zk = ds.labels[train, k][observed], z[observed]
                if y.min() == y.max():
                    continue
                delta = zk[y == 1].mean(0) - zk[y == 0].mean(0)
                s_w = np.cov(zk.T, bias=True) - y.mean() * (1 - y.mean()) * np.outer(delta, delta)
                s_w += shrink * np.trace(s_w) / z.shape[1] * np.eye(z.shape[1])
                try:
                    j = float(delta @ np.linalg.solve(s_w, delta))
                except np.linalg.LinAlgError:  # a constant layer (layer 0's last token is the template's)
                    continue
                if j > best.get(target, (-1.0,))[0]:
                    best[target] = (j, layer, pooling)
    return [LayerChoice(t, encoder, best[t][2], best[t][1], best[t][1] / n_layers, "fisher", best[t][0])
            for t in ds.targets]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.02, 0.98)
    return np.log(p / (1 - p)).astype(np.float32)


def prior_offsets(ds, train, test, folds: int = 5) -> np.ndarray:
    """[N, K] logit of the task prior: out-of-fold on training rows, fitted on all training rows for test."""
    tasks = np.asarray(ds.tasks)
    fold = np.random.default_rng(0).permutation(len(train)) % folds
    out = np.zeros((ds.num_rows, ds.num_targets), np.float32)
    for f in range(folds):
        fit, pred = train[fold != f], train[fold == f]
        out[pred] = logit(task_prior.fit_task_prior(tasks[fit], ds.labels[fit], ds.mask[fit]).predict(tasks[pred])[0])
    prior = task_prior.fit_task_prior(tasks[train], ds.labels[train], ds.mask[train])
    out[test] = logit(prior.predict(tasks[test])[0])
    return out


@functools.lru_cache(maxsize=None)
def variant_model(trunk: model_lib.TrunkConfig, rank_weight: float) -> train_lib.SeedModel:
    """The library's trunk (`train.trunk_model`: init, logits, loss) with logits + batch['offset'] and an optional
    within-row pairwise ranking term added to its loss."""
    base = train_lib.trunk_model(trunk)
    graphdef = model_lib.graphdef_of(trunk)

    def loss(params, batch, row_w, dropout_key):
        z = train_lib.trunk_logits(graphdef, params, batch, dropout_key) + batch["offset"]
        out = train_lib.trunk_loss(z, batch, row_w)
        if rank_weight:
            m = batch["m"] * row_w[:, None]
            pairs = (m * batch["y"])[:, :, None] * (m * (1 - batch["y"]))[:, None, :]  # [B, K, K]: i right, j wrong
            pair_loss = jax.nn.softplus(-(z[:, :, None] - z[:, None, :]))
            out = out + rank_weight * jnp.sum(pairs * pair_loss) / jnp.maximum(jnp.sum(pairs), 1.0)
        return out

    return train_lib.SeedModel(base.init, loss, f"variant{rank_weight}:{base.name}")


def fit_predict(config, split, design, offsets, seed: int, rank_weight: float) -> np.ndarray:
    ds, train, test = split.ds, split.train, split.test
    cfg = config.copy_and_resolve_references()
    cfg.seed = seed
    tc = stages.train_config(cfg)
    x, y, m, _, _ = train_lib._check_inputs(design[train], ds.labels[train], ds.mask[train], ds.targets)
    trunk = tc.trunk(x.shape[1], y.shape[1])
    runs = train_lib.train_seeds(variant_model(trunk, rank_weight), {"x": x, "y": y, "m": m, "offset": offsets[train]},
                                 tc)
    params = jax.tree.map(lambda leaf: leaf[runs.kept()], runs.best_params)
    graphdef = model_lib.graphdef_of(trunk)
    z = jax.vmap(lambda p: model_lib.apply(graphdef, p, jnp.asarray(design[test], jnp.float32)))(params)
    return np.asarray(jnp.mean(jax.nn.sigmoid(z + offsets[test]), 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/llmrouter_pool.py:encoders=smollm2_135m,max_train=1000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="router_variants.json")
    args = ap.parse_args()

    config = load_config(args.config)
    split = stages.load_split(config)
    ds, train, test = split.ds, split.train, split.test
    feats = stages.extract_all(config, ds.prompts)
    choices = fisher_choices(feats, ds, train)
    print("layers:", [(c.target, c.layer, c.pooling) for c in choices], flush=True)
    _, X = router_lib.build_design(FeatureLookup(feats), stages.block_specs(config, choices), train)
    emb = sentence.embed_prompts(config.baselines.sentence_encoder, ds.prompts, config.cache_dir or None)
    sentence_spec = router_lib.SharedBlockSpec((router_lib.FeatureSource("sentence", 0, "mean"),), 100)
    _, S = router_lib.build_design({("sentence", 0, "mean"): emb}, [sentence_spec], train)
    XS = np.concatenate([X, S], 1)
    offsets, zero = prior_offsets(ds, train, test), np.zeros((ds.num_rows, ds.num_targets), np.float32)
    variants = {"base": (X, zero, 0.0), "offset": (X, offsets, 0.0), "sentence": (XS, zero, 0.0),
                "rank": (X, zero, 0.5), "offset+sentence": (XS, offsets, 0.0)}
    best_single = ds.targets.index(data_lib.dataset_stats(ds, train)["best_single"]["target"])
    lookup = controls_lib.task_priors(split)[0]
    results = {name: [] for name in variants}
    for seed in range(args.repeats):
        predictions = dict(lookup)
        for name, (design, off, rank_weight) in variants.items():
            predictions[name] = fit_predict(config, split, design, off, seed, rank_weight)
        comparison = report_lib.compare_routers(
            predictions, ds.labels[test], ds.mask[test], split.costs[test], split.prices_in, ds.targets,
            reference=controls_lib.TASK_LOOKUP, n_boot=1000, seed=seed, best_single_index=best_single,
            operating_tolerance=config.routing.tolerance, tasks=[ds.tasks[i] for i in test])
        for name in variants:
            row, paired = comparison["rows"][name], comparison["paired"][name]
            results[name].append({**{k: row[k]["value"] for k in METRICS},
                                  **{f"vs_lookup_{k}": paired[k] for k in PAIRED}})
        results.setdefault(controls_lib.TASK_LOOKUP, []).append(
            {k: comparison["rows"][controls_lib.TASK_LOOKUP][k]["value"] for k in METRICS})
        print(f"repeat {seed} done", flush=True)
    fileio.write_json(args.out, results)
    print("| router | " + " | ".join(METRICS) + " | Δacc vs lookup per repeat (p) |")
    for name, runs in results.items():
        cells = [f"{np.mean([r[k] for r in runs]):.3f}" for k in METRICS]
        paired = ", ".join(f"{r['vs_lookup_router_acc']['diff']:+.3f} ({r['vs_lookup_router_acc']['p_value']:.2f})"
                           for r in runs if "vs_lookup_router_acc" in r)
        print(f"| {name} | " + " | ".join(cells) + f" | {paired} |")


if __name__ == "__main__":
    main()
