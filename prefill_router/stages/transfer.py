"""Transfer stages: encoder x target matrix of test AUC per readout control (pooling x template).

For each (encoder, control, target): train-rows CV-AUC [L, K, P] of StandardScaler -> PCA(p) ->
LogisticRegression(C) (`probes.cv_auc`) picks (layer, p); that probe (`probes.readout`) is refitted on
all training rows with a label and scores the test rows once (ROC-AUC, 95 % percentile bootstrap CI).
"""
import itertools
import pathlib
import time

import numpy as np
from absl import logging

from prefill_router import fileio
from prefill_router import probes as probes_lib
from prefill_router.encoders import registry
from prefill_router.evaluation import bootstrap
from prefill_router.evaluation import metrics as metrics_lib
from prefill_router.evaluation import report as report_lib
from prefill_router.probes.readout import fit_linear_probe
from prefill_router.stages.features import TEMPLATES, extract, readout_encoder

POOLINGS = ("last", "mean")
TEMPLATE_MEANING = {
    "chat": "chat template with the generation prompt (default rendering; last token ends the assistant header)",
    "no_gen_prompt": "same chat template rendered with add_generation_prompt=False (prompt ends with the user "
                     "turn's end-of-turn tokens)",
    "raw": "the bare router prompt without any template (also drops a template's default system prompt)",
}


def check_config(config) -> None:
    t = config.transfer
    bad = [x for x in t.templates if x not in TEMPLATES] + [x for x in t.poolings if x not in POOLINGS]
    if bad:
        raise ValueError(f"unknown transfer readout controls {bad}; templates: {TEMPLATES}, poolings: {POOLINGS}")
    if config.data.source != "collect":
        raise ValueError("the transfer experiment needs labels from local targets: set data.source='collect'")
    if not config.encoders or not t.templates or not t.poolings:
        raise ValueError("transfer needs at least one encoder, one template control and one pooling")


def controls(config) -> list[str]:
    """Readout control names '<template>/<pooling>'."""
    t = config.transfer
    return [f"{tpl}/{pool}" for tpl, pool in itertools.product(t.templates, t.poolings)]


def auc_with_ci(scores: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict:
    """Test ROC-AUC with its 95 % percentile bootstrap CI over prompts (NaN when a class is empty)."""
    stat = lambda r: metrics_lib.roc_auc(scores[r], y[r])
    ci = bootstrap.bootstrap_ci(stat, len(y), n_boot=n_boot, seed=seed)
    return {"auc": float(ci["estimate"]), "ci_low": float(ci["low"]), "ci_high": float(ci["high"]),
            "n_boot_nan": int(ci["n_nan"]), "n_test": int(len(y)), "n_test_pos": int(y.sum())}


def pca_grid(widths, D: int, n_fit: int) -> tuple:
    """The configured PCA widths clipped to what the data allows (<= D and <= rows of a CV fit)."""
    cap = max(1, min(D, n_fit))
    return tuple(sorted({min(int(p), cap) for p in widths})) or (cap,)


def evaluate_cell(X: np.ndarray, ds, train: np.ndarray, test: np.ndarray, config) -> list[dict]:
    """X [L', N, D] features of every prompt -> one record per target (train CV choice + test AUC)."""
    t = config.transfer
    Ytr, Mtr = ds.labels[train], ds.mask[train]
    n_min = int(Mtr.sum(axis=0).min())
    dims = pca_grid(t.cv_pca_dims, X.shape[2], n_min - int(np.ceil(n_min / t.cv_folds)))
    cv = np.asarray(probes_lib.cv_auc(X[:, train], Ytr, Mtr, pca_dims=list(dims), n_splits=t.cv_folds,
                                      seed=config.seed, C=t.C))                       # [L', K, P]
    out = []
    for k, target in enumerate(ds.targets):
        rec = {"target": target, "cv_auc_by_layer": np.nanmax(cv[:, k], axis=1) if np.isfinite(cv[:, k]).any()
               else np.full(cv.shape[0], np.nan), "pca_dims": list(dims)}
        if not np.isfinite(cv[:, k]).any():
            rec.update(valid=False, reason="a class has < 2 training rows", auc=np.nan, ci_low=np.nan,
                       ci_high=np.nan)
            out.append(rec)
            continue
        li, pi = np.unravel_index(np.nanargmax(cv[:, k]), cv[:, k].shape)
        rows_tr = train[Mtr[:, k]]
        rows_te = test[ds.mask[test, k]]
        probe = fit_linear_probe(X[li, rows_tr], ds.labels[rows_tr, k], dims[pi], C=t.C)
        scores = probe.scores(X[li, rows_te])
        rec.update(valid=True, layer_pos=int(li), pca_dim=int(dims[pi]), train_cv_auc=float(cv[li, k, pi]),
                   test_scores=scores, test_rows=rows_te,
                   **auc_with_ci(scores, ds.labels[rows_te, k].astype(np.float64), config.eval.n_boot,
                                 config.seed))
        out.append(rec)
    return out


def transfer_cells(config, ds, train: np.ndarray, test: np.ndarray) -> tuple[dict, dict]:
    """Extracts features per (encoder, template) and evaluates every pooling.

    Returns cells {(encoder, control, target): record} and info {(encoder, control): readout details}. An
    encoder whose template renders identically to 'chat' reuses the chat cells (flagged ``same_as_chat``).
    """
    t = config.transfer
    cells, info = {}, {}
    base_kwargs = config.extract.template_kwargs.to_dict()
    for name in config.encoders:
        enc = registry.load_encoder(name, cache_dir=config.cache_dir or None, dtype=config.extract.dtype, head=False)
        n_layers = int(enc.model.config.num_layers)
        chat_text = enc.tokenizer.render(ds.prompts[0], dict(base_kwargs))
        for tpl in t.templates:
            renc, kwargs = readout_encoder(enc, tpl, base_kwargs)
            text = renc.tokenizer.render(ds.prompts[0], dict(kwargs))
            same = tpl != "chat" and text == chat_text
            if same and (name, f"chat/{t.poolings[0]}") in info:
                for pool in t.poolings:  # identical prompts: reuse the chat results
                    cells.update({(name, f"{tpl}/{pool}", tg): cells[(name, f"chat/{pool}", tg)]
                                  for tg in ds.targets})
                    info[(name, f"{tpl}/{pool}")] = {**info[(name, f"chat/{pool}")], "same_as_chat": True}
                continue
            fs = extract(config, renc, ds.prompts, kwargs)
            for pool in t.poolings:
                start = time.time()
                for rec in evaluate_cell(fs.get(pool), ds, train, test, config):
                    if rec["valid"]:
                        rec["layer"] = int(fs.layers[rec.pop("layer_pos")])
                        rec["rel_depth"] = rec["layer"] / n_layers
                    cells[(name, f"{tpl}/{pool}", rec["target"])] = rec
                info[(name, f"{tpl}/{pool}")] = {"same_as_chat": same, "n_layers": n_layers, "dim": fs.dim,
                                                 "example_prompt_tail": text[-60:], "store_key": fs.key,
                                                 "probe_s": round(time.time() - start, 2)}
                logging.info("%s %s/%s: test AUC %s", name, tpl, pool, ", ".join(
                    f"{tg}={cells[(name, f'{tpl}/{pool}', tg)]['auc']:.3f}" for tg in ds.targets))
        del enc
    return cells, info


def own_vs_foreign(cells: dict, ds, encoders, control: str, n_boot: int, seed: int) -> list[dict]:
    """Paired bootstrap (same test resamples) of own - foreign test AUC, per target and foreign encoder."""
    out = []
    for k, target in enumerate(ds.targets):
        own = cells.get((target, control, target))
        if own is None or not own["valid"]:
            continue
        y = ds.labels[own["test_rows"], k].astype(np.float64)
        for enc in encoders:
            other = cells[(enc, control, target)]
            if enc == target or not other["valid"]:
                continue
            a, b = own["test_scores"], other["test_scores"]
            test = bootstrap.paired_bootstrap_test(lambda r: metrics_lib.roc_auc(a[r], y[r]),
                                                   lambda r: metrics_lib.roc_auc(b[r], y[r]), len(y),
                                                   n_boot=n_boot, seed=seed)
            out.append({"target": target, "foreign": enc, **test})
    return out


def summarize(config, ds, controls, cells, info, paired, train, test) -> dict:
    """Everything of transfer.json except timings and plots: matrices [E, K] per control, summaries, curves."""
    encoders = list(config.encoders)
    matrices, summary = {}, {}
    for c in controls:
        get = lambda key: np.array([[cells[(e, c, tg)].get(key, np.nan) if cells[(e, c, tg)]["valid"] else np.nan
                                     for tg in ds.targets] for e in encoders], dtype=np.float64)
        matrices[c] = {"encoders": encoders, "targets": list(ds.targets), "auc": get("auc"),
                       "ci_low": get("ci_low"), "ci_high": get("ci_high"), "train_cv_auc": get("train_cv_auc"),
                       "layer": get("layer"), "rel_depth": get("rel_depth"), "pca_dim": get("pca_dim"),
                       "same_as_chat": [bool(info[(e, c)]["same_as_chat"]) for e in encoders]}
        A = matrices[c]["auc"]
        per_target = []
        for k, tg in enumerate(ds.targets):
            if tg not in encoders:
                continue
            own = A[encoders.index(tg), k]
            foreign = [A[i, k] for i, e in enumerate(encoders) if e != tg]
            per_target.append({"target": tg, "own": own,
                               "foreign_mean": np.nanmean(foreign) if np.isfinite(foreign).any() else np.nan,
                               "foreign_best": np.nanmax(foreign) if np.isfinite(foreign).any() else np.nan})
        d_mean = [p["own"] - p["foreign_mean"] for p in per_target]
        d_best = [p["own"] - p["foreign_best"] for p in per_target]
        summary[c] = {"per_target": per_target,
                      "own_minus_foreign_mean": float(np.nanmean(d_mean)) if np.isfinite(d_mean).any() else np.nan,
                      "own_minus_foreign_best": float(np.nanmean(d_best)) if np.isfinite(d_best).any() else np.nan,
                      "own_is_best": int(sum(np.isfinite(x) and x > 0 for x in d_best)),
                      "n_targets_with_own": len(per_target), "paired": paired[c]}
    layer_curves = {f"{e}|{c}|{tg}": cells[(e, c, tg)]["cv_auc_by_layer"]
                    for e in encoders for c in controls for tg in ds.targets}
    return {"dataset": {"name": ds.name, "num_rows": ds.num_rows, "targets": list(ds.targets),
                        "n_train": len(train), "n_test": len(test),
                        "train_accuracy": np.nanmean(np.where(ds.mask[train], ds.labels[train], np.nan), axis=0),
                        "test_accuracy": np.nanmean(np.where(ds.mask[test], ds.labels[test], np.nan), axis=0)},
            "controls": controls, "matrices": matrices, "summary": summary,
            "readout_info": {f"{e}|{c}": v for (e, c), v in info.items()},
            "train_cv_auc_by_layer": layer_curves,
            "protocol": {"layer_choice": "argmax over (layer, PCA width) of train-rows CV-AUC",
                         "cv_folds": config.transfer.cv_folds, "C": config.transfer.C,
                         "n_boot": config.eval.n_boot, "template_controls": dict(TEMPLATE_MEANING)}}


def _cell(m, i, k) -> str:
    a = m["auc"][i][k]
    if not np.isfinite(a):
        return "NaN (a class is empty)"
    return (f"{report_lib.format_ci(a, m['ci_low'][i][k], m['ci_high'][i][k])} "
            f"(L{int(m['layer'][i][k])}, {m['rel_depth'][i][k]:.2f})")


def _fmt(x, digits=3) -> str:
    return "NaN" if x is None or not np.isfinite(x) else f"{x:+.{digits}f}"


def write_report(workdir: pathlib.Path, config, ds, controls, result) -> None:
    """Writes workdir/report.md atomically: summary, one matrix table per control, plots, timings."""
    d = result["dataset"]
    lines = [f"# Encoder x target transfer: {ds.name}", "",
             f"{d['num_rows']} prompts ({d['n_train']} train / {d['n_test']} test); targets (labels from cloze "
             f"scoring): {', '.join(d['targets'])}; encoders: {', '.join(config.encoders)}.",
             "Target test accuracy: " + ", ".join(f"{t} {a:.2f}" for t, a in zip(d["targets"], d["test_accuracy"]))
             + ".", "",
             "Each cell: test ROC-AUC [95% bootstrap CI] of a logistic probe (StandardScaler -> PCA -> "
             "LogisticRegression) fitted on training rows at the (layer, PCA width) chosen by training-rows "
             "CV-AUC; in parentheses the chosen layer and its relative depth (layer / number of blocks; "
             "0 = embeddings). Rows: encoders; columns: targets; the diagonal (encoder = target) is the "
             "target's own hidden states.", "",
             "## Summary", ""]
    for c in controls:
        s = result["summary"][c]
        if not s["n_targets_with_own"]:
            lines.append(f"- **{c}**: no target is among the encoders, so there is no own-states diagonal.")
            continue
        sig = [p for p in s["paired"] if np.isfinite(p["p_value"]) and p["p_value"] < 0.05]
        gap = s["own_minus_foreign_mean"]
        verdict = ("no comparison possible (NaN AUCs)" if not np.isfinite(gap) else
                   f"own states are {'better' if gap > 0 else 'worse'} than a foreign encoder on average, "
                   f"by {abs(gap):.3f} AUC")
        lines.append(
            f"- **{c}**: {verdict}; own states beat the best foreign encoder for {s['own_is_best']} of "
            f"{s['n_targets_with_own']} targets; mean own - mean-foreign AUC {_fmt(s['own_minus_foreign_mean'])}, "
            f"own - best-foreign {_fmt(s['own_minus_foreign_best'])}; "
            f"{len(sig)} of {len(s['paired'])} paired own-vs-foreign differences have bootstrap p < 0.05.")
    lines += ["", "Readout controls: " + "; ".join(f"`{k}` = {v}" for k, v in TEMPLATE_MEANING.items()
                                                  if k in config.transfer.templates)
              + "; pooling `last` = final prompt token, `mean` = mean over prompt tokens.", ""]
    for c in controls:
        m = result["matrices"][c]
        lines += [f"## Readout {c}", "", "| encoder \\ target | " + " | ".join(m["targets"]) + " |",
                  "|---|" + "---|" * len(m["targets"])]
        for i, e in enumerate(m["encoders"]):
            flag = " (no template: same prompts as chat)" if m["same_as_chat"][i] else ""
            lines.append(f"| {e}{flag} | " + " | ".join(
                (f"**{_cell(m, i, k)}**" if e == t else _cell(m, i, k)) for k, t in enumerate(m["targets"])) + " |")
        paired = result["summary"][c]["paired"]
        if paired:
            lines += ["", "Own - foreign test AUC (paired bootstrap): " + "; ".join(
                f"{p['target']} vs {p['foreign']}: {_fmt(p['diff'])} [{_fmt(p['low'])}, {_fmt(p['high'])}], "
                f"p={p['p_value']:.3f}" if np.isfinite(p["diff"]) else f"{p['target']} vs {p['foreign']}: NaN"
                for p in paired)]
        lines += ["", f"![{c}](plots/transfer_{c.replace('/', '_')}.png)", ""]
    lines += ["## Stage timings (s)", "", " · ".join(f"{k} {v:.1f}" for k, v in result["timings_s"].items()), "",
              "All numbers: `transfer.json` (per-layer training CV-AUC curves included); headline: `metrics.json`."]
    fileio.atomic_write_text(workdir / "report.md", "\n".join(lines) + "\n")
