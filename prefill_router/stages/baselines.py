"""Baselines stage: semantic kNN and MLP on sentence embeddings, and matrix factorisation.

The test predictions are a stage product (`stages.cache`): keyed by the embeddings, labels, mask, train/test
rows, target names, ``config.baselines``, the trunk's training settings and the seed, a rerun on the same
inputs reads them instead of refitting.
"""
from absl import logging

from prefill_router import router as router_lib
from prefill_router.baselines import knn, mf, sentence
from prefill_router.stages import cache
from prefill_router.stages.data import Split
from prefill_router.stages.router import train_config


def baselines(config, split: Split) -> dict:
    """Fitted on training rows: router name -> P [N_test, K] on the test rows."""
    ds, train, test = split.ds, split.train, split.test
    emb = sentence.embed_prompts(config.baselines.sentence_encoder, ds.prompts, config.cache_dir or None)
    key = cache.content_key("baselines", emb, ds.labels, ds.mask, train, test, list(ds.targets), config.baselines,
                            train_config(config).to_json(), config.seed)
    return cache.cached_arrays("baselines", key, lambda: _fit_predict(config, ds, train, test, emb),
                               config.cache_dir or None)


def _fit_predict(config, ds, train, test, emb) -> dict:
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
