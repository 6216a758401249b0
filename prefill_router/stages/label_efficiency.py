"""Label-efficiency stage (issue #19): hold one target out of the pool, train the router on the others, then add
the held-out target from N of its training labels, for N in a grid, with repeats.

Per held-out target h and labelled subset (N rows drawn from h's labelled training rows, seed per repeat):
    head / readout / finetune   `router.add_target` on the base router (trained without h)
    task lookup                 h's training accuracy per task on the N rows (`baselines.task_prior`)
    kNN                         cosine kNN on sentence embeddings of the N rows (`baselines.knn`)
Reference: the router retrained from scratch on all targets with all labels (one per pool), and the base router
routing among the other targets only. Scored on the test rows: h's ROC-AUC, and the pool's argmax-router accuracy
and gap captured (complete test rows; best single chosen on training rows). Repeats -> mean and 95 % t-interval;
over held-out targets -> mean and t-interval of the per-target means. Everything is fitted on training rows.

Per-target results go to ``<outdir>/<target>.json`` as they finish (a rerun resumes after the last one).
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import scipy.stats
from absl import logging

from prefill_router import fileio
from prefill_router import router as router_lib
from prefill_router.baselines import knn, task_prior
from prefill_router.evaluation import metrics
from prefill_router.router import add_target as add_lib
from prefill_router.stages.data import Split
from prefill_router.stages.features import FeatureLookup
from prefill_router.stages.router import block_specs, train_config

ALL = 0  # grid entry meaning "every labelled training row of the held-out target"
REFERENCE = "retrain (all labels)"
WITHOUT = "pool without the target"


def t_interval(values, alpha: float = 0.05) -> dict:
    """{mean, low, high, n} of the finite values: mean ± t_{1-alpha/2, n-1} · sd / sqrt(n) (n = 1: no interval)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean = float(v.mean())
    half = float(scipy.stats.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(v.size)}


def pool_scores(P: np.ndarray, split: Split, column: int) -> dict:
    """auc of ``column`` on its labelled test rows; router_acc / gap_captured_pct of argmax routing on complete
    test rows (best single chosen on training rows)."""
    ds, test, train = split.ds, split.test, split.train
    y, m = ds.labels[test], ds.mask[test]
    auc = metrics.roc_auc(P[m[:, column], column], y[m[:, column], column])
    rows = metrics.complete_rows(m)
    yc, choices = y[rows], np.argmax(P[rows], axis=1)
    train_acc = np.nansum(np.where(ds.mask[train], ds.labels[train], 0), 0) / np.maximum(ds.mask[train].sum(0), 1)
    acc, best, oracle = (float(yc[np.arange(len(yc)), choices].mean()), float(yc[:, int(np.argmax(train_acc))].mean()),
                         float(yc.max(axis=1).mean()))
    return {"auc": auc, "router_acc": acc, "gap_captured_pct": metrics.gap_captured(acc, best, oracle)}


def _base_bundle(config, feats, choices, split: Split, others: list[str]):
    ds, train = split.ds, split.train
    sub = ds.select_targets(others)
    specs = block_specs(config, [c for c in choices if c.target in others])
    transforms, X = router_lib.build_design(FeatureLookup(feats), specs, train)
    ens = router_lib.train_ensemble(X[train], sub.labels[train], sub.mask[train], train_config(config),
                                    target_names=others)
    return router_lib.RouterBundle(targets=others, blocks=specs, transforms=transforms, ensemble=ens), X


def draw(rows: np.ndarray, y: np.ndarray, n: int, seed: int, tries: int = 100) -> np.ndarray | None:
    """n of ``rows`` (labels y [len(rows)]) without replacement with >= add_target.MIN_PER_CLASS of each class,
    or None if ``tries`` draws fail (all rows when n >= len(rows))."""
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        pick = rng.permutation(len(rows))[:n]
        pos = int(y[pick].sum())
        if min(pos, len(pick) - pos) >= add_lib.MIN_PER_CLASS and len(pick) >= add_lib.MIN_LABELS:
            return rows[np.sort(pick)]
        if n >= len(rows):
            break
    return None


def held_out_curve(config, feats, choices, split: Split, emb: np.ndarray, target: str,
                   reference_P: np.ndarray) -> dict:
    """Curves of one held-out target: {"methods": {method: {N: [score dicts per repeat]}}, "reference": ...}."""
    le = config.label_efficiency
    ds, train, test = split.ds, split.train, split.test
    j = ds.targets.index(target)
    others = [t for t in ds.targets if t != target]
    order = [others.index(t) if t != target else len(others) for t in ds.targets]  # ds order from others + [h]
    bundle, X = _base_bundle(config, feats, choices, split, others)
    P_base = bundle.ensemble.predict(X[test])
    labelled = train[ds.mask[train, j]]
    y_all = ds.labels[labelled, j]
    tasks = np.asarray(ds.tasks)
    out = {"n_labelled_train": int(len(labelled)), "methods": {}, "reference": pool_scores(reference_P, split, j)}
    without = metrics.complete_rows(ds.mask[test])
    yo = ds.select_targets(others).labels[test][without]
    out["without_target_router_acc"] = float(yo[np.arange(len(yo)), np.argmax(P_base[without], 1)].mean())
    for n in le.grid:
        n_eff = len(labelled) if n == ALL or n >= len(labelled) else int(n)
        for r in range(le.repeats if n_eff < len(labelled) else 1):
            pick = draw(labelled, y_all, n_eff, config.seed + 1000 * r + n_eff)
            if pick is None:
                logging.warning("%s: no draw of %d labels with both classes; N=%d skipped", target, n_eff, n_eff)
                break
            y = ds.labels[pick, j]
            results = {}
            for mode in le.modes:
                cfg = add_lib.AddConfig(mode=mode, C=le.C, finetune_steps=le.finetune_steps,
                                        finetune_lr=le.finetune_lr, distill_weight=le.distill_weight)
                new, rep = add_lib.add_target(bundle, target, X[pick], y, cfg, prompts=[ds.prompts[i] for i in pick],
                                              price=(0.0, 0.0), output_tokens_median=0.0)
                P = new.ensemble.predict(X[test])
                results[mode] = {**pool_scores(P[:, order], split, j),
                                 "drift_test_max": float(np.abs(P[:, :-1] - P_base).max())}
            prior = task_prior.fit_task_prior(tasks[pick], y[:, None], np.ones((len(pick), 1), bool))
            col = {"task lookup": prior.predict(tasks[test])[0][:, 0]}
            if emb is not None:
                col["kNN"] = knn.fit_knn(emb[pick], y[:, None], np.ones((len(pick), 1), bool),
                                         seed=config.seed + r).predict(emb[test])[:, 0]
            for name, p in col.items():
                results[name] = pool_scores(np.column_stack([P_base, p])[:, order], split, j)
            for name, s in results.items():
                out["methods"].setdefault(name, {}).setdefault(str(n_eff), []).append(s)
        logging.info("%s N=%d: %s", target, n_eff, {k: round(float(np.mean([s["auc"] for s in v[str(n_eff)]])), 3)
                                                    for k, v in out["methods"].items() if str(n_eff) in v})
    return out


def n_to_fraction(curve: dict, method: str, fraction: float = 0.95) -> dict:
    """Smallest N whose mean AUC reaches ``fraction`` of the retrained router's AUC, and of its lift over 0.5."""
    ref = curve["reference"]["auc"]
    points = sorted((int(n), float(np.nanmean([s["auc"] for s in v]))) for n, v in curve["methods"][method].items())
    auc_n = next((n for n, a in points if a >= fraction * ref), None)
    lift_n = next((n for n, a in points if a - 0.5 >= fraction * (ref - 0.5)), None)
    return {"auc": auc_n, "lift": lift_n}


def summarize(curves: dict, config) -> dict:
    """Per target: mean / CI over repeats per (method, N); over targets: mean / CI of the per-target means
    (N given as a grid value; 'all' = each target's full labelled set)."""
    keys = ("auc", "router_acc", "gap_captured_pct")
    per_target, pooled = {}, {}
    for target, c in curves.items():
        rows = {}
        for method, by_n in c["methods"].items():
            full = str(c["n_labelled_train"])
            for n, scores in by_n.items():
                label = "all" if n == full else n
                rows.setdefault(method, {})[label] = {k: t_interval([s[k] for s in scores]) for k in keys}
                pooled.setdefault(method, {}).setdefault(label, {k: [] for k in keys})
                for k in keys:
                    pooled[method][label][k].append(rows[method][label][k]["mean"])
        per_target[target] = {"curves": rows, "reference": c["reference"],
                              "without_target_router_acc": c["without_target_router_acc"],
                              "n_to_95pct": {m: n_to_fraction(c, m) for m in c["methods"]}}
    over = {m: {n: {k: t_interval(v) for k, v in d.items()} for n, d in by_n.items()} for m, by_n in pooled.items()}
    reference = {k: t_interval([c["reference"][k] for c in curves.values()]) for k in keys}
    n95 = {}
    for method, by_n in over.items():  # on the means over targets (N = 'all' excluded: it differs per target)
        pts = sorted((int(n), v["auc"]["mean"]) for n, v in by_n.items() if n != "all")
        n95[method] = next((n for n, a in pts if a >= 0.95 * reference["auc"]["mean"]), None)
    return {"per_target": per_target, "over_targets": over, "reference": reference, "n_to_95pct_auc": n95,
            "without_target_router_acc": t_interval([c["without_target_router_acc"] for c in curves.values()]),
            "n_all_mean": float(np.mean([c["n_labelled_train"] for c in curves.values()])),
            "grid": list(config.label_efficiency.grid), "repeats": config.label_efficiency.repeats}


def run_curves(config, feats, choices, split: Split, emb, reference_P: np.ndarray, outdir: pathlib.Path) -> dict:
    """held_out_curve for every target of ``label_efficiency.targets`` (default all), resuming from outdir."""
    outdir.mkdir(parents=True, exist_ok=True)
    targets = list(config.label_efficiency.targets) or list(split.ds.targets)
    unknown = sorted(set(targets) - set(split.ds.targets))
    if unknown:
        raise ValueError(f"label_efficiency.targets {unknown} are not targets of the pool {split.ds.targets}")
    curves = {}
    for t in targets:
        path = outdir / f"{t.replace('/', '_')}.json"
        if path.is_file():
            curves[t] = json.loads(path.read_text())
            continue
        curves[t] = held_out_curve(config, feats, choices, split, emb, t, reference_P)
        fileio.write_json(path, curves[t])
    return curves


def plot(summary: dict, path: pathlib.Path, title: str) -> str:
    """Held-out AUC, pool router accuracy and gap captured against N (mean over targets, 95 % CI band), one line per
    method, the retrained router as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("auc", "held-out target AUC"), ("router_acc", "pool router accuracy"),
            ("gap_captured_pct", "gap captured (%)"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    n_all = summary["n_all_mean"]
    for ax, (k, label) in zip(axes, keys):
        for method, by_n in summary["over_targets"].items():
            pts = sorted((n_all if n == "all" else int(n), v[k]) for n, v in by_n.items())
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1]["mean"] for p in pts], marker="o", label=method)
            ax.fill_between(xs, [p[1]["low"] for p in pts], [p[1]["high"] for p in pts], alpha=0.15)
        ax.axhline(summary["reference"][k]["mean"], color="k", ls="--", lw=1, label=REFERENCE)
        if k == "router_acc":
            ax.axhline(summary["without_target_router_acc"]["mean"], color="grey", ls=":", lw=1, label=WITHOUT)
        ticks = sorted({int(n) for n in summary["grid"] if 0 < n < n_all} | {round(n_all)})
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) if t != round(n_all) else f"all\n({t})" for t in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("labels of the added target (N)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def markdown(summary: dict, title: str) -> str:
    """The report: per method and N, mean [CI] over targets; the retrained reference; N to 95 % per target."""
    lines = [f"# {title}", "", f"Grid {summary['grid']}, {summary['repeats']} repeats per N (fewer labels than the "
             "target has). Means over held-out targets with 95 % t-intervals over targets.", "",
             "| method | N | held-out AUC | router acc | gap captured % |", "|---|---|---|---|---|"]

    def fmt(v, scale=1.0):
        return f"{v['mean'] * scale:.3f} [{v['low'] * scale:.3f}, {v['high'] * scale:.3f}]"

    for method, by_n in summary["over_targets"].items():
        for n in sorted(by_n, key=lambda s: float("inf") if s == "all" else int(s)):
            v = by_n[n]
            lines.append(f"| {method} | {n} | {fmt(v['auc'])} | {fmt(v['router_acc'])} | "
                         f"{v['gap_captured_pct']['mean']:.1f} |")
    r = summary["reference"]
    lines += [f"| {REFERENCE} | all | {fmt(r['auc'])} | {fmt(r['router_acc'])} | "
              f"{r['gap_captured_pct']['mean']:.1f} |",
              f"| {WITHOUT} | 0 | | {fmt(summary['without_target_router_acc'])} | |", "",
              "Smallest N whose mean AUC over targets reaches 95 % of the retrained router's: " + ", ".join(
                  f"{m} {n if n is not None else '> grid'}" for m, n in summary["n_to_95pct_auc"].items()), "",
              "| held-out target | retrained AUC | router acc without it | N to 95 % AUC (head) | "
              "N to 95 % of AUC lift over 0.5 (head) |", "|---|---|---|---|---|"]
    for t, v in summary["per_target"].items():
        n95 = v["n_to_95pct"].get("head", {"auc": None, "lift": None})
        lines.append(f"| {t} | {v['reference']['auc']:.3f} | {v['without_target_router_acc']:.3f} | "
                     f"{n95['auc'] or '> max'} | {n95['lift'] or '> max'} |")
    return "\n".join(lines) + "\n"
