"""Router stage: feature blocks from the chosen layers, the SharedTrunkNet seed ensemble, the checkpoint."""
import pathlib

from absl import logging

from prefill_router import data as data_lib
from prefill_router import router as router_lib
from prefill_router.stages.base import typed
from prefill_router.stages.data import Split
from prefill_router.stages.features import FeatureLookup


def per_target_specs(choices, pca_dim: int) -> list:
    """The paper's layout: one block per target from its selected (encoder, layer, pooling). A ``cv_auc``
    choice keeps the PCA width its cross-validation chose; other criteria (and a cv_auc choice of no PCA,
    logged) use ``pca_dim``."""
    specs = []
    for c in choices:
        width = pca_dim
        if c.criterion == "cv_auc":
            if c.pca_dim is None:
                logging.warning("cv_auc chose no PCA for %s; its block uses router.pca_dim=%d", c.target, pca_dim)
            else:
                width = c.pca_dim
        specs.append(router_lib.BlockSpec(c.target, c.encoder, c.layer, c.pooling, width))
    return specs


def block_specs(config, choices) -> list:
    """Block specs of ``router.layout``: 'per_target' (one block per target) or 'shared' (one block)."""
    if config.router.layout == "per_target":
        return per_target_specs(choices, config.router.pca_dim)
    if config.router.layout == "shared":
        sources = list(dict.fromkeys(router_lib.FeatureSource(c.encoder, c.layer, c.pooling) for c in choices))
        return [router_lib.SharedBlockSpec(tuple(sources), config.router.pca_dim)]
    raise ValueError(f"unknown router.layout {config.router.layout!r}; use 'per_target' or 'shared'")


def train_config(config) -> router_lib.TrainConfig:
    """The trunk's training settings; seeds 42 + seed·n .. 42 + (seed + 1)·n - 1 for n = router.num_seeds
    (``seed`` = config.seed, so repeats train different ensembles)."""
    first = 42 + config.seed * config.router.num_seeds
    return typed(router_lib.TrainConfig, config.router, skip=("layout", "pca_dim", "kind", "num_seeds"),
                 seeds=tuple(range(first, first + config.router.num_seeds)))


def cost_table(ds, train) -> dict:
    """target -> {"output_tokens_median"} from training rows (stored in the router bundle)."""
    tokens = data_lib.expected_output_tokens(ds, train)
    return {t: {"output_tokens_median": float(tokens[k])} for k, t in enumerate(ds.targets)}


def fit_router(config, feats: dict, choices, split: Split, workdir: pathlib.Path):
    """Fits blocks and the ensemble on training rows; saves workdir/router. Returns (Ensemble, X [N, F])."""
    ds, train = split.ds, split.train
    specs = block_specs(config, choices)
    transforms, X = router_lib.build_design(FeatureLookup(feats), specs, train)
    cfg = train_config(config)
    ensemble = router_lib.train_ensemble(X[train], ds.labels[train], ds.mask[train], cfg,
                                         target_names=ds.targets, checkpoint_dir=workdir / "train_state")
    bundle = router_lib.RouterBundle(
        targets=ds.targets, blocks=specs, transforms=transforms, ensemble=ensemble, prices=ds.prices,
        cost_table=cost_table(ds, train),
        encoders={name: {"identity": fs.encoder_identity} for name, (fs, _) in feats.items()},
        train_config=cfg.to_json(), extra={"dataset": ds.name, "extract": config.extract.to_dict()},
        train_split=router_lib.split_record(config.seed, [ds.prompts[i] for i in train]))
    router_lib.save_router(workdir / "router", bundle, overwrite=True)
    return ensemble, X
