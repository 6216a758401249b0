"""Cross-attention and cost stage: cross-attention routers on prefill / sentence query tokens, per-query
output-length prediction, and reward routing swept to cost–quality curves.

    fit_routers(config, split, workdir, X) -> ({router: P [N_test, K]}, {router: tokens [N, K] | None}, emb | None)
    costs_and_rewards(config, split, stats, predictions, query_features, length_heads, headline_router) -> dict
    versus_trunk(config, split, stats, predictions) -> {router: {metric: {diff, low, high, p_value}}} | None
    append_report(workdir, result)     the section of report_lines(result) appended to workdir/report.md

Checkpoints: workdir/cross_attention_<query>/ (orbax). Routing decisions use estimated costs only
(n_in·price_in + output-token estimate·price_out); measured costs are realised costs where the data has them
(real $, or observed output tokens), else the same median estimate (the share is reported).
"""
from __future__ import annotations

import pathlib

import numpy as np

from prefill_router import data as data_lib
from prefill_router import fileio
from prefill_router import router as router_lib
from prefill_router.baselines import sentence
from prefill_router.evaluation import rewards as rewards_lib
from prefill_router.evaluation.lengths import length_metrics
from prefill_router.evaluation.report import compare_routers, format_ci, markdown_table
from prefill_router.router import cost_model
from prefill_router.router import cross_attention as ca
from prefill_router.stages.data import Split
from prefill_router.stages.evaluate import ROUTER as TRUNK
from prefill_router.stages.evaluate import scoring_args
from prefill_router.stages.router import train_config

KINDS = ("shared_trunk", "cross_attention")  # router.kind: cross_attention adds this stage to the pipeline
QUERIES = ("prefill", "sentence")
VERSUS_KEYS = (("router_acc", "router acc"), ("auc_mean", "mean AUC"), ("within_task_auc_mean", "within-task AUC"),
               ("disagree_router_acc", "acc (disagree zone)"), ("cost_savings_price_pct", "savings % (price)"),
               ("p_auccc", "P-AUCCC"), ("aiq", "AIQ"))
ASSUMPTIONS = (
    "query tokens: one token per fitted feature block (per-target scaler+PCA block), a sentence embedding is one "
    "token; each token has its own Linear to the common width W plus a learned block embedding",
    "model embeddings: one learned vector per target (not derived from model descriptions)",
    "single head, head dim W; residual from the model embedding, then a pre-LN ReLU FFN; heads: Linear(W→1) "
    "for the P(correct) logit and for the standardised log1p output length",
    "loss: masked BCE + length_weight × masked MSE of the standardised log length (length_weight from the config)",
    "exponential reward p·exp(−c/λ); the other reading exp(λ·p − c) routes exactly like the linear reward",
    "per-query length predictor: ridge on [query features, log1p n_in] in log1p space, α and ridge-vs-median "
    "chosen per target on an inner 15% validation split of the training rows",
)


def router_name(query: str) -> str:
    return f"CrossAttention ({query})"


def _fit(config, x, token_dims, split: Split, workdir: pathlib.Path, query: str) -> ca.CrossAttentionEnsemble:
    ds, train = split.ds, split.train
    c = config.cross_attention
    tokens = None if ds.output_tokens is None else ds.output_tokens[train]
    ens = ca.train_cross_attention(x[train], ds.labels[train], ds.mask[train], tokens, token_dims=token_dims,
                                   width=c.width, ffn=c.ffn, dropout=c.dropout, length_weight=c.length_weight,
                                   config=train_config(config), target_names=ds.targets)
    ca.save_cross_attention(workdir / f"cross_attention_{query}", ens)
    return ens


def fit_routers(config, split: Split, workdir: pathlib.Path, x_prefill: np.ndarray):
    """Trains the cross-attention routers of ``config.cross_attention.queries`` on training rows.

    x_prefill [N, F]: the SharedTrunkNet design matrix (its blocks' widths, read from workdir/router, are the
    query tokens). The sentence query embeds the prompts with ``baselines.sentence_encoder`` (one token).
    Returns ({name: P [N_test, K]}, {name: predicted output tokens [N, K] or None}, sentence embeddings or None).
    """
    queries = tuple(config.cross_attention.queries)
    unknown = set(queries) - set(QUERIES)
    if unknown or not queries:
        raise ValueError(f"cross_attention.queries {list(queries)} must be a non-empty subset of {QUERIES}")
    inputs, emb = {}, None
    if "prefill" in queries:
        dims = tuple(t.out_dim for t in router_lib.load_router(workdir / "router").transforms)
        inputs["prefill"] = (x_prefill, dims)
    if "sentence" in queries:
        emb = sentence.embed_prompts(config.baselines.sentence_encoder, split.ds.prompts, config.cache_dir or None)
        inputs["sentence"] = (sentence_design(emb, split.train), (emb.shape[1],))
    predictions, heads = {}, {}
    for query, (x, dims) in inputs.items():
        ens = _fit(config, np.asarray(x, np.float32), dims, split, workdir, query)
        predictions[router_name(query)] = ens.predict(x[split.test])
        heads[router_name(query)] = ens.predict_tokens(x) if ens.has_lengths.any() else None
    return predictions, heads, emb


def sentence_design(emb: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Sentence embeddings standardised (+ PCA to full width) on training rows, as the MLP baseline sees them."""
    spec = router_lib.SharedBlockSpec((router_lib.FeatureSource("sentence", 0, "mean"),), emb.shape[1])
    return router_lib.build_design({("sentence", 0, "mean"): emb}, [spec], train)[1]


def costs_and_rewards(config, split: Split, stats: dict, predictions: dict, query_features: list,
                      length_heads: dict, headline_router: str) -> dict:
    """Per-query length prediction (vs the per-target median) and reward curves of every router.

    query_features: arrays [N, D] the length ridge reads (concatenated with log1p n_in); length_heads:
    router name -> predicted tokens [N, K] (cross-attention heads) to report beside the ridge.
    Every router decides with the validated per-query estimate; ``headline_router`` also with the median.
    """
    ds, train, test = split.ds, split.train, split.test
    medians = data_lib.expected_output_tokens(ds, train)
    n_in = data_lib.estimate_input_tokens(ds.prompts)
    decide_median = cost_model.query_costs(n_in, medians, ds.prices, ds.targets)
    out = {"lengths": None, "length_sources": None}
    decide = decide_median
    if ds.output_tokens is not None:
        xq = np.concatenate([np.asarray(f, np.float64) for f in query_features] + [np.log1p(n_in)[:, None]], axis=1)
        lp = cost_model.fit_length_predictor(xq, ds.output_tokens, train, seed=config.seed)
        fill = lambda t: np.where(np.isnan(t), medians, t)  # targets never observed keep the default
        chosen = fill(lp.predict(xq))
        decide = cost_model.query_costs(n_in, chosen, ds.prices, ds.targets)
        candidates = {"ridge, validated per target (used for routing)": chosen,
                      "ridge (every target)": fill(lp.predict(xq, source="ridge"))}
        candidates.update({f"{name} length head": t for name, t in length_heads.items() if t is not None})
        out["lengths"] = {name: length_metrics(t, medians, ds.output_tokens, test, ds.targets,
                                               n_boot=config.eval.n_boot, seed=config.seed)
                          for name, t in candidates.items()}
        out["length_sources"] = dict(zip(ds.targets, lp.source))
        out["length_val_mae"] = {k: dict(zip(ds.targets, v.tolist())) for k, v in lp.val_mae.items()}
    measure, fallback = cost_model.realised_costs(ds, medians)
    routers = {name: (P, decide[test]) for name, P in predictions.items()}
    if ds.output_tokens is not None and headline_router in predictions:
        routers[f"{headline_router} (median length)"] = (predictions[headline_router], decide_median[test])
    best = ds.targets.index(stats["train"]["best_single"]["target"])
    out["rewards"] = rewards_lib.compare_rewards(
        routers, ds.labels[test], ds.mask[test], measure[test], forms=tuple(config.routing.reward_forms),
        n_lambdas=config.routing.n_lambdas, best_single_index=best,
        reference=headline_router if headline_router in routers else None, n_boot=config.eval.n_boot,
        seed=config.seed)
    out["measured_cost_fallback_share"] = fallback
    out["versus_trunk"] = versus_trunk(config, split, stats, predictions)
    return out


def versus_trunk(config, split: Split, stats: dict, predictions: dict) -> dict | None:
    """Paired bootstrap of each cross-attention router − SharedTrunkNet on the evaluate stage's test metrics
    (same rows, resamples and seed as its comparison table); None without the trunk or a cross-attention router."""
    names = [router_name(q) for q in QUERIES if router_name(q) in predictions]
    if TRUNK not in predictions or not names:
        return None
    best = split.ds.targets.index(stats["train"]["best_single"]["target"])
    cmp = compare_routers({TRUNK: predictions[TRUNK], **{n: predictions[n] for n in names}},
                          reference=TRUNK, **scoring_args(config, split, best))
    return {n: {k: cmp["paired"][n][k] for k, _ in VERSUS_KEYS if k in cmp["paired"][n]} for n in names}


def report_lines(result: dict) -> list[str]:
    """report.md section: length prediction vs the median, reward curves per router, assumptions."""
    fmt = lambda m: format_ci(m["value"], m["ci_low"], m["ci_high"])
    lines = []
    vs = result.get("versus_trunk")
    if vs:
        keys = [(k, label) for k, label in VERSUS_KEYS if any(k in d for d in vs.values())]
        table = [["router − " + TRUNK] + [label for _, label in keys]]
        table += [[name] + [f"{format_ci(d[k]['diff'], d[k]['low'], d[k]['high'])} (p={d[k]['p_value']:.3g})"
                            if k in d else "—" for k, _ in keys] for name, d in vs.items()]
        lines += [f"## Cross-attention routers vs {TRUNK} (paired bootstrap on the test rows, 95% CI, two-sided p)",
                  "", "Argmax routing as in the comparison table above (its rows, resamples and seed).", "",
                  markdown_table(table), ""]
    lines += ["## Per-query output length vs the per-target median (test rows, 95% bootstrap CIs)", ""]
    if result["lengths"] is None:
        lines += ["No observed output lengths in this dataset: routing uses the per-target median estimate.", ""]
    else:
        table = [["predictor", "MAE (tokens)", "median MAE", "Δ MAE", "Spearman ρ (pooled)", "median ρ"]]
        table += [[name] + [fmt(r["pooled"][k]) for k in ("mae_pred", "mae_median", "mae_diff", "spearman_pred",
                                                         "spearman_median")]
                  for name, r in result["lengths"].items()]
        lines += [markdown_table(table), "",
                  "Source chosen per target on validation: " + ", ".join(f"{t}: {s}" for t, s in
                                                                         result["length_sources"].items()), ""]
    rw = result["rewards"]
    lines += ["## Reward routing: full cost–quality curves (test rows, measured cost, 95% bootstrap CIs)", "",
              f"Measured cost: realised where the data has it; {100 * result['measured_cost_fallback_share']:.1f} % "
              f"of (prompt, target) entries fall back to the median estimate. Best single: "
              f"{rw['best_single']['acc']:.3f} accuracy at {rw['best_single']['cost']:.3g} $/prompt. "
              f"λ-stability: share of prompts whose choice changes between λ*/2 and 2λ* at the cheapest operating "
              f"point reaching best-single accuracy.", "", rw["markdown"], "",
              "Assumptions (issue #20): " + "; ".join(ASSUMPTIONS) + ".", ""]
    return lines


def append_report(workdir: pathlib.Path, result: dict) -> None:
    """Appends the ``report_lines`` section to workdir/report.md (atomic rewrite)."""
    path = workdir / "report.md"
    fileio.atomic_write_text(path, path.read_text() + "\n" + "\n".join(report_lines(result)) + "\n")
