"""The `pipeline` experiment: data -> features -> probes -> router -> baselines -> evaluation -> report.

Everything fitted (layer choice, scalers, PCA, the trunk, kNN's k, MF) sees training rows only; the
test split is scored once, at the end. Expensive products are cached outside the workdir (labels
collected from local targets, encoder features, sentence embeddings), so a rerun, or a run
interrupted mid-extraction, resumes instead of recomputing.

Workdir layout: config.json, data_stats.{json,md}, probes/ (table + heat maps), router/ (orbax
checkpoint of the whole router), metrics.json, report.md, plots/.
"""
import contextlib
import dataclasses
import json
import pathlib
import time

import jax
import numpy as np
from absl import logging

from prefill_router import checkpointing, paths
from prefill_router import data as data_lib
from prefill_router import probes as probes_lib
from prefill_router import router as router_lib
from prefill_router.baselines import knn, mf, sentence
from prefill_router.encoders import registry
from prefill_router.evaluation import plots as plots_lib
from prefill_router.evaluation import report as report_lib
from prefill_router.features.extract import extract_features

SOURCES = ("collect", "llmrouter", "routellm", "routerbench", "long")


@contextlib.contextmanager
def stage(name: str, timings: dict):
    logging.info("===== stage %s =====", name)
    start = time.time()
    yield
    timings[name] = round(time.time() - start, 2)
    logging.info("===== stage %s done in %.1f s =====", name, timings[name])


def write_json(path: pathlib.Path, obj) -> None:
    checkpointing.write_json_atomic(path, report_lib.to_jsonable(obj))


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------
def load_routing_data(config) -> data_lib.RoutingDataset:
    """The configured dataset, de-duplicated and split (train/test; the trunk carves its own val)."""
    d = config.data
    data_dir = paths.data_dir(config.data_dir or None)
    if d.source not in SOURCES:
        raise ValueError(f"unknown data.source {d.source!r}; choose one of {', '.join(SOURCES)}")
    if d.source == "collect":
        from prefill_router.data import collect, synthetic
        mixes = {"uniform": (None, (1, 2, 3)),
                 "local_targets": (synthetic.LOCAL_TARGETS_MIX, synthetic.LOCAL_TARGETS_DIFFICULTIES)}
        if d.mix not in mixes:
            raise ValueError(f"unknown data.mix {d.mix!r}; choose one of {', '.join(mixes)}")
        mix, difficulties = mixes[d.mix]
        items = synthetic.generate_items(d.num_items, seed=d.item_seed, mix=mix, difficulties=difficulties)
        ds = collect.collect_labels(list(d.targets), items, cache_dir=config.cache_dir or None,
                                    test_fraction=d.test_fraction, split_seed=config.seed)
    elif d.source == "llmrouter":
        ds = data_lib.load_llmrouter(data_dir, threshold=d.threshold)
    elif d.source == "routellm":
        ds = data_lib.load_routellm(data_dir, subset=d.subset)
    elif d.source == "routerbench":
        ds = data_lib.load_routerbench(_required_path(d.path), threshold=d.threshold)
    else:
        ds = data_lib.load_long_format(_required_path(d.path))
    ds = data_lib.assign_splits(ds, test_fraction=d.test_fraction, seed=config.seed,
                                stratify_by=d.stratify_by or None)
    ds = subsample(ds, d.max_train, d.max_test, config.seed)
    data_lib.check_no_leak(ds)
    return ds


def _required_path(path: str) -> pathlib.Path:
    if not path:
        raise ValueError("this data.source reads a file: set --config.data.path=FILE")
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"data.path {p} does not exist")
    return p


def subsample(ds, max_train: int, max_test: int, seed: int):
    """Seeded subsample of each split (0 = keep all); order of kept rows preserved."""
    rng = np.random.default_rng(seed)
    keep = []
    for split, cap in (("train", max_train), ("val", 0), ("test", max_test)):
        rows = ds.rows(split)
        if cap and len(rows) > cap:
            rows = np.sort(rng.choice(rows, cap, replace=False))
        keep.append(rows)
    rows = np.sort(np.concatenate(keep))
    return ds if len(rows) == ds.num_rows else ds.subset(rows)


def load_split(config):
    """(dataset, train rows, test rows, per-prompt costs [N, K], input prices [K]); both splits non-empty."""
    ds = load_routing_data(config)
    train, test = ds.rows("train"), ds.rows("test")
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"need training and test rows; got {len(train)} train / {len(test)} test")
    prices_in = np.array([ds.prices[t][0] for t in ds.targets], np.float64)
    return ds, train, test, data_lib.per_prompt_costs(ds, train_rows=train), prices_in


# ----------------------------------------------------------------------------------------------------
# Features and probes
# ----------------------------------------------------------------------------------------------------
def extract_all(config, prompts) -> dict:
    """encoder name -> (FeatureSet, number of blocks L)."""
    store = paths.cache_dir(config.cache_dir or None) / "features"
    out = {}
    for name in config.encoders:
        enc = registry.load_encoder(name, cache_dir=config.cache_dir or None)
        fs = extract_features(enc, prompts, store_dir=store, batch_tokens=config.extract.batch_tokens,
                              max_length=config.extract.max_length, dtype=config.extract.dtype,
                              template_kwargs=config.extract.template_kwargs.to_dict(),
                              truncate=config.extract.truncate)
        out[name] = (fs, enc.model.config.num_layers)
        del enc
    return out


def probe(config, feats: dict, ds, train_rows, outdir: pathlib.Path):
    """Probe table over (encoder, layer, pooling, target) on training rows; per-target layer choice."""
    pc = config.probe
    narrowest = min(fs.dim for fs, _ in feats.values())
    pca_dim = min(pc.pca_dim, narrowest, len(train_rows)) or None
    if pc.pca_dim and pca_dim != pc.pca_dim:
        logging.warning("probe.pca_dim=%d exceeds the narrowest encoder width / training rows; using %d",
                        pc.pca_dim, pca_dim)
    cfg = probes_lib.ProbeConfig(shrink=pc.shrinkage, fisher_pca_dim=pca_dim,
                                 pca_dims=tuple(d for d in pc.cv_pca_dims if d <= narrowest) or (narrowest,),
                                 compute_cv=pc.cv_auc, n_splits=pc.cv_folds,
                                 seed=config.seed)
    features = {(name, pooling): fs.get(pooling)[:, train_rows]
                for name, (fs, _) in feats.items() for pooling in pc.poolings}
    layer_ids = {(name, pooling): fs.layers.tolist() for name, (fs, _) in feats.items() for pooling in pc.poolings}
    n_layers = {name: n for name, (_, n) in feats.items()}
    table = probes_lib.run_probes(features, ds.labels[train_rows], ds.mask[train_rows], cfg, targets=ds.targets,
                                  layer_ids=layer_ids, n_layers=n_layers)
    probes_lib.write_report(table, outdir)
    choices = probes_lib.select_layers(table, pc.criterion)
    for c in choices:
        logging.info("target %-34s -> %s layer %d (%s pooling), %s = %.4g", c.target, c.encoder, c.layer,
                     c.pooling, c.criterion, c.score)
    return table, choices


class FeatureLookup:
    """Callable FeatureSource -> [N, D], reading single layers from the feature stores on demand."""

    def __init__(self, feats: dict):
        self.feats, self.cache = feats, {}

    def __call__(self, source) -> np.ndarray:
        key = (source.encoder, source.layer, source.pooling)
        if key not in self.cache:
            if source.encoder not in self.feats:
                raise KeyError(f"no features extracted for encoder {source.encoder!r}")
            self.cache[key] = self.feats[source.encoder][0].get(source.pooling, [source.layer])[0]
        return self.cache[key]


def per_target_specs(choices, pca_dim: int) -> list:
    """The paper's layout: one block per target from its selected (encoder, layer, pooling)."""
    return [router_lib.BlockSpec(c.target, c.encoder, c.layer, c.pooling, pca_dim) for c in choices]


def block_specs(config, choices, ds) -> list:
    if config.router.layout == "per_target":
        return per_target_specs(choices, config.router.pca_dim)
    if config.router.layout == "shared":
        sources = list(dict.fromkeys(router_lib.FeatureSource(c.encoder, c.layer, c.pooling) for c in choices))
        return [router_lib.SharedBlockSpec(tuple(sources), config.router.pca_dim)]
    raise ValueError(f"unknown router.layout {config.router.layout!r}; use 'per_target' or 'shared'")


def train_config(config) -> router_lib.TrainConfig:
    r = config.router
    return router_lib.TrainConfig(hidden=tuple(r.hidden), dropout=tuple(r.dropout), learning_rate=r.learning_rate,
                                  weight_decay=r.weight_decay, batch_size=r.batch_size, max_epochs=r.max_epochs,
                                  val_fraction=r.val_fraction, patience=r.patience,
                                  seeds=tuple(range(42, 42 + r.num_seeds)), keep=r.keep)


# ----------------------------------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------------------------------
def run(config, workdir: pathlib.Path) -> dict:
    timings = {}
    (workdir / "plots").mkdir(exist_ok=True)

    with stage("data", timings):
        ds, train, test, costs_query, prices_in = load_split(config)
        stats = {"all": data_lib.dataset_stats(ds), "train": data_lib.dataset_stats(ds, train),
                 "test": data_lib.dataset_stats(ds, test)}
        data_lib.write_stats(stats["all"], workdir / "data_stats")
        logging.info("dataset %s: %d prompts x %d targets; %d train / %d test", ds.name, ds.num_rows,
                     ds.num_targets, len(train), len(test))

    with stage("features", timings):
        feats = extract_all(config, ds.prompts)
    if jax.process_index() != 0:  # multi-host: every host extracted its chunks; host 0 does the rest
        logging.info("process %d: features done; probing, training and reporting run on process 0",
                     jax.process_index())
        return {}

    with stage("probe", timings):
        table, choices = probe(config, feats, ds, train, workdir / "probes")

    with stage("router", timings):
        lookup = FeatureLookup(feats)
        specs = block_specs(config, choices, ds)
        transforms, X = router_lib.build_design(lookup, specs, train)
        ensemble = router_lib.train_ensemble(X[train], ds.labels[train], ds.mask[train], train_config(config),
                                             target_names=ds.targets,
                                             checkpoint_dir=workdir / "train_state")
        bundle = router_lib.RouterBundle(
            targets=ds.targets, blocks=specs, transforms=transforms, ensemble=ensemble, prices=ds.prices,
            cost_table=cost_table(ds, train),
            encoders={name: {"identity": fs.encoder_identity} for name, (fs, _) in feats.items()},
            train_config=train_config(config).to_json(),
            extra={"dataset": ds.name, "extract": config.extract.to_dict()})
        checkpointing.save_router(workdir / "router", bundle, overwrite=True)
        predictions = {"SharedTrunkNet": ensemble.predict(X[test])}

    if config.baselines.semantic or config.baselines.mf:
        with stage("baselines", timings):
            predictions.update(baselines(config, ds, train, test))

    with stage("evaluate", timings):
        best_single = ds.targets.index(stats["train"]["best_single"]["target"])  # chosen on training rows
        args = dict(Y=ds.labels[test], M=ds.mask[test], costs=costs_query[test], prices_in=prices_in,
                    target_names=ds.targets, n_boot=config.eval.n_boot, seed=config.seed,
                    best_single_index=best_single, operating_tolerance=config.routing.tolerance)
        router_result = report_lib.evaluate_router(predictions["SharedTrunkNet"], **args)
        comparison = report_lib.compare_routers(predictions, **args)
        two_model = (routellm_metrics(predictions, ds.labels[test], ds.mask[test], prices_in, config)
                     if ds.num_targets == 2 else None)
        plot_files = plots_lib.plot_result(router_result, workdir / "plots")
        others = {name: report_lib.evaluate_router(P, **args) for name, P in predictions.items()
                  if name != "SharedTrunkNet"}
        if others:
            plot_files += plots_lib.plot_comparison({"SharedTrunkNet": router_result, **others}, workdir / "plots")

    metrics = {
        "headline": {k: router_result["headline"][k] for k in HEADLINE if k in router_result["headline"]},
        "router": router_result, "comparison": {k: v for k, v in comparison.items() if k != "markdown"},
        "layer_choices": [dataclasses.asdict(c) for c in choices], "data": stats, "timings_s": timings,
        "plots": plot_files, "routellm": two_model,
    }
    write_json(workdir / "metrics.json", metrics)
    write_report(workdir, config, ds, stats, choices, router_result, comparison, timings, two_model)
    return metrics


HEADLINE = ("auc_mean", "router_acc", "gap_captured_pct", "cost_savings_price_pct", "cost_savings_query_pct",
            "p_auccc", "aiq", "oracle_acc", "best_single_acc")


def cost_table(ds, train) -> dict:
    tokens = data_lib.expected_output_tokens(ds, train)
    return {t: {"output_tokens_median": float(tokens[k])} for k, t in enumerate(ds.targets)}


def baselines(config, ds, train, test) -> dict:
    """Semantic kNN / MLP on sentence embeddings and MF: name -> P [N_test, K]."""
    emb = sentence.embed_prompts(config.baselines.sentence_encoder, ds.prompts, config.cache_dir or None)
    y, m = ds.labels, ds.mask
    out = {}
    if config.baselines.semantic:
        router = knn.fit_knn(emb[train], y[train], m[train], seed=config.seed)
        logging.info("semantic kNN: k=%d (validation AUC by k: %s)", router.k, router.val_auc)
        out[f"kNN ({config.baselines.sentence_encoder})"] = router.predict(emb[test])
        spec = router_lib.SharedBlockSpec((router_lib.FeatureSource("sentence", 0, "mean"),), emb.shape[1])
        transforms, X = router_lib.build_design({("sentence", 0, "mean"): emb}, [spec], train)
        mlp = router_lib.train_ensemble(X[train], y[train], m[train], train_config(config), target_names=ds.targets)
        out[f"MLP ({config.baselines.sentence_encoder})"] = mlp.predict(X[test])
    if config.baselines.mf:
        out["MF"] = mf.fit_mf(emb[train], y[train], m[train], mf.MFConfig(seed=config.seed)).predict(emb[test])
    return out


def routellm_metrics(predictions: dict, Y, M, prices_in, config) -> dict:
    """APGR and CPT(20/50/80 %) per router for a 2-target pool (strong = the pricier target), with CIs.

    Score s = p_strong - p_weak (method.md §7); rows lacking either label are dropped.
    """
    from prefill_router.evaluation import bootstrap, curves
    strong = int(np.argmax(prices_in))
    weak = 1 - strong
    rows = np.flatnonzero(M[:, 0] & M[:, 1])
    out = {}
    for name, P in predictions.items():
        score = P[rows, strong] - P[rows, weak]

        def stat(r, score=score):
            c = curves.routellm_curve(score[r], Y[rows[r], weak], Y[rows[r], strong])
            return [curves.apgr(c)] + [curves.cpt(c, q) for q in (0.2, 0.5, 0.8)]

        ci = bootstrap.bootstrap_ci(stat, len(rows), n_boot=config.eval.n_boot, seed=config.seed)
        out[name] = {key: {"value": float(ci["estimate"][i]), "ci_low": float(ci["low"][i]),
                           "ci_high": float(ci["high"][i])}
                     for i, key in enumerate(("apgr", "cpt20_pct", "cpt50_pct", "cpt80_pct"))}
    return out


def _routellm_lines(two_model: dict, ds) -> list[str]:
    fmt = lambda m: report_lib.format_ci(m["value"], m["ci_low"], m["ci_high"])
    lines = ["## Two-model pool: RouteLLM metrics (strong = pricier target)", "",
             "| router | APGR | CPT(20%) | CPT(50%) | CPT(80%) |", "|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(fmt(m[k]) for k in ("apgr", "cpt20_pct", "cpt50_pct", "cpt80_pct"))
              + " |" for name, m in two_model.items()]
    return lines + [""]


def write_report(workdir, config, ds, stats, choices, router_result, comparison, timings, two_model=None) -> None:
    h = router_result["headline"]
    fmt = lambda k: report_lib.format_ci(h[k]["value"], h[k]["ci_low"], h[k]["ci_high"])
    router_acc = h["router_acc"]["value"]
    best_single = h["best_single_acc"]["value"]
    verdict = ("beats" if h["router_acc"]["ci_low"] > best_single else
               "does not beat" if router_acc <= best_single else "is above, but not significantly above,")
    lines = [
        f"# Routing report: {ds.name}", "",
        f"{ds.num_rows} prompts × {ds.num_targets} targets ({len(ds.rows('train'))} train / "
        f"{len(ds.rows('test'))} test); encoders: {', '.join(config.encoders)}; "
        f"layer criterion: {config.probe.criterion}; router layout: {config.router.layout}.", "",
        f"**SharedTrunkNet** mean AUC {fmt('auc_mean')}, router accuracy {fmt('router_acc')}, gap to Oracle "
        f"captured {fmt('gap_captured_pct')} %. The router {verdict} the best single model "
        f"({router_result['best_single']['name']}, {best_single:.3f}).", "",
        "## Routers on the test split (95% bootstrap CIs)", "", comparison["markdown"], "",
        *(_routellm_lines(two_model, ds) if two_model else []),
        "## Selected layers (training rows only)", "",
        "| target | encoder | layer | pooling | criterion | score |", "|---|---|---|---|---|---|",
        *[f"| {c.target} | {c.encoder} | {c.layer} | {c.pooling} | {c.criterion} | {c.score:.4g} |" for c in choices],
        "", report_lib.markdown_report(router_result, title="SharedTrunkNet: all metrics").strip(), "",
        "## Dataset", "", data_lib.format_stats_markdown(stats["all"]), "",
        "## Stage timings (s)", "", " · ".join(f"{k} {v:.1f}" for k, v in timings.items()), "",
        "Plots: `plots/`; probe heat maps and depth curves: `probes/`; router checkpoint: `router/`.",
    ]
    (workdir / "report.md.tmp").write_text("\n".join(lines) + "\n")
    (workdir / "report.md.tmp").replace(workdir / "report.md")
