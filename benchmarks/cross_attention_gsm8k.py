"""RouteLLM GSM8K (2 targets; responses give output tokens): sentence-query routers, length prediction, rewards.

    PYTHONPATH=. python benchmarks/cross_attention_gsm8k.py OUTDIR

The README's issue #20 GSM8K table comes from this script (not a pipeline run: it skips the encoder stages,
since the sentence-query routers need no prefill features). It composes the pipeline's stages and library:
the seeded split of `configs/cross_attention.py:source=gsm8k,queries=sentence`, MiniLM embeddings (cached),
the cross-attention router, the trunk on the same embedding (MLP), kNN, MF and the task lookup, scored by
`report.compare_routers` (reference: the MLP), RouteLLM APGR/CPT, and the per-query length / reward curves of
`stages.cross_attention.costs_and_rewards`. Writes OUTDIR/report.md and OUTDIR/metrics.json.
"""
import pathlib
import sys
import time

from common import load_config
from prefill_router import fileio, stages
from prefill_router import router as router_lib
from prefill_router.baselines import knn, mf, sentence
from prefill_router.evaluation import report as report_lib
from prefill_router.router import cross_attention as ca
from prefill_router.stages import cross_attention as ca_stage


def main():
    wd = pathlib.Path(sys.argv[1])
    (wd / "plots").mkdir(parents=True, exist_ok=True)
    config = load_config("configs/cross_attention.py:source=gsm8k,queries=sentence")
    t0 = time.time()
    split = stages.load_split(config)
    stats = stages.data_stats(split, wd)
    ds, train, test = split.ds, split.train, split.test
    emb = sentence.embed_prompts(config.baselines.sentence_encoder, ds.prompts, config.cache_dir or None)
    tc, c = stages.train_config(config), config.cross_attention
    xs = ca_stage.sentence_design(emb, train)
    e = ca.train_cross_attention(xs[train], ds.labels[train], ds.mask[train], ds.output_tokens[train],
                                 token_dims=(xs.shape[1],), width=c.width, ffn=c.ffn, dropout=c.dropout,
                                 length_weight=c.length_weight, config=tc, target_names=ds.targets)
    preds = {"CrossAttention (sentence)": e.predict(xs[test]),
             "MLP (minilm_l6)": router_lib.train_ensemble(xs[train], ds.labels[train], ds.mask[train], tc,
                                                          target_names=ds.targets).predict(xs[test]),
             "kNN (minilm_l6)": knn.fit_knn(emb[train], ds.labels[train], ds.mask[train], seed=0).predict(emb[test]),
             "MF": mf.fit_mf(emb[train], ds.labels[train], ds.mask[train], mf.MFConfig(seed=0)).predict(emb[test])}
    routers = {**preds, **stages.task_priors(split)[0]}
    best = ds.targets.index(stats["train"]["best_single"]["target"])
    cmp = report_lib.compare_routers(routers, ds.labels[test], ds.mask[test], split.costs[test], split.prices_in,
                                     ds.targets, reference="MLP (minilm_l6)", n_boot=config.eval.n_boot, seed=0,
                                     best_single_index=best, tasks=[ds.tasks[i] for i in test])
    two = stages.routellm_metrics(routers, ds.labels[test], ds.mask[test], split.prices_in, config)
    costs = ca_stage.costs_and_rewards(config, split, stats, routers, [emb],
                                       {"CrossAttention (sentence)": e.predict_tokens(xs)}, "CrossAttention (sentence)")
    fmt = lambda m: report_lib.format_ci(m["value"], m["ci_low"], m["ci_high"])
    lines = ["# RouteLLM GSM8K, sentence-embedding queries (MiniLM-L6)", "", cmp["markdown"], "",
             "| router | APGR | CPT(50%) |", "|---|---|---|"]
    lines += [f"| {n} | {fmt(m['apgr'])} | {fmt(m['cpt50_pct'])} |" for n, m in two.items()]
    lines += [""] + ca_stage.report_lines(costs) + [f"total {time.time() - t0:.0f} s"]
    fileio.atomic_write_text(wd / "report.md", "\n".join(lines) + "\n")
    fileio.write_json(wd / "metrics.json", {"comparison": {k: v for k, v in cmp.items() if k != "markdown"},
                                           "routellm": two, "cross_attention": costs})


if __name__ == "__main__":
    main()
