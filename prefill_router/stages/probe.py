"""Probe stage: the probe table over (encoder, layer, pooling, target) on training rows; layer choice."""
import pathlib

from absl import logging

from prefill_router import probes as probes_lib
from prefill_router.stages.base import typed


def probe(config, feats: dict, ds, train_rows, outdir: pathlib.Path):
    """(ProbeTable, per-target LayerChoice list by ``probe.criterion``); table and heat maps in ``outdir``."""
    pc = config.probe
    narrowest = min(fs.dim for fs, _ in feats.values())
    pca_dim = min(pc.pca_dim, narrowest, len(train_rows)) or None
    if pc.pca_dim and pca_dim != pc.pca_dim:
        logging.warning("probe.pca_dim=%d exceeds the narrowest encoder width / training rows; using %d",
                        pc.pca_dim, pca_dim)
    cfg = typed(probes_lib.ProbeConfig, pc, skip=("criterion", "poolings"), pca_dim=pca_dim,
                cv_pca_dims=tuple(d for d in pc.cv_pca_dims if d <= narrowest) or (narrowest,), seed=config.seed)
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
