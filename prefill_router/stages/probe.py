"""Probe stage: the probe table over (encoder, layer, pooling, target) on training rows; layer choice.

    probe(config, feats, ds, train_rows, outdir) -> (ProbeTable, [LayerChoice])   table and heat maps in outdir
    choose_layers(config, feats, ds, rows) -> [LayerChoice]   the same choice from ``rows`` alone, nothing written

The table is a stage product (`stages.cache`): keyed by the probed feature arrays, labels and mask of the
rows, the ProbeConfig, target names and layer ids, a rerun on the same inputs reads it instead of probing.
"""
import pathlib

from absl import logging

from prefill_router import probes as probes_lib
from prefill_router.stages import cache
from prefill_router.stages.base import typed


def probe_table(config, feats: dict, ds, rows, *, cv_auc: bool | None = None):
    """ProbeTable of every (encoder, pooling, layer, target) fitted on ``rows`` only; ``cv_auc`` overrides
    probe.cv_auc."""
    pc = config.probe
    narrowest = min(fs.dim for fs, _ in feats.values())
    pca_dim = min(pc.pca_dim, narrowest, len(rows)) or None
    if pc.pca_dim and pca_dim != pc.pca_dim:
        logging.warning("probe.pca_dim=%d exceeds the narrowest encoder width / training rows; using %d",
                        pc.pca_dim, pca_dim)
    extra = {} if cv_auc is None else {"cv_auc": cv_auc}
    cfg = typed(probes_lib.ProbeConfig, pc, skip=("criterion", "poolings"), pca_dim=pca_dim,
                cv_pca_dims=tuple(d for d in pc.cv_pca_dims if d <= narrowest) or (narrowest,), seed=config.seed,
                **extra)
    features = {(name, pooling): fs.get(pooling)[:, rows]
                for name, (fs, _) in feats.items() for pooling in pc.poolings}
    layer_ids = {(name, pooling): fs.layers.tolist() for name, (fs, _) in feats.items() for pooling in pc.poolings}
    n_layers = {name: n for name, (_, n) in feats.items()}
    labels, mask = ds.labels[rows], ds.mask[rows]
    key = cache.content_key("probe_table", cfg, features, labels, mask, list(ds.targets), layer_ids, n_layers)
    text = cache.cached_text("probe_table", key, lambda: probes_lib.run_probes(
            features, labels, mask, cfg, targets=ds.targets, layer_ids=layer_ids, n_layers=n_layers).to_json(),
                             config.cache_dir or None)
    return probes_lib.ProbeTable.from_json(text)


def probe(config, feats: dict, ds, train_rows, outdir: pathlib.Path):
    """(ProbeTable, per-target LayerChoice list by ``probe.criterion``); table and heat maps in ``outdir``."""
    table = probe_table(config, feats, ds, train_rows)
    probes_lib.write_report(table, outdir)
    choices = probes_lib.select_layers(table, config.probe.criterion)
    for c in choices:
        logging.info("target %-34s -> %s layer %d (%s pooling), %s = %.4g", c.target, c.encoder, c.layer,
                     c.pooling, c.criterion, c.score)
    return table, choices


def choose_layers(config, feats: dict, ds, rows) -> list:
    """``probe.criterion``'s per-target LayerChoice from ``rows`` alone (e.g. a refit's own training rows), as
    `probe` chooses; CV-AUC runs only when it is the criterion, and no report is written."""
    table = probe_table(config, feats, ds, rows, cv_auc=config.probe.criterion == "cv_auc")
    return probes_lib.select_layers(table, config.probe.criterion)
