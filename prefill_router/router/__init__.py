"""Router: per-target feature blocks, SharedTrunkNet seed ensembles, routing policies.

    transforms, X = build_design(features_lookup, specs, train_rows)   # scaler + PCA fitted on train rows
    ens = train_ensemble(X[train], Y[train], M[train], TrainConfig())  # 10 seeds, keep best 5
    P = ens.predict(X[test])                                           # [N, K] mean of sigmoids
    choice = route_tolerance(P, prices_in, tol=0.2)
    bundle = RouterBundle(targets, specs, transforms, ens, prices=...); save_router(dir, bundle)
"""
from prefill_router.router.blocks import (BlockSpec, FeatureSource, FittedTransform, SharedBlockSpec, apply_design,
                                          build_design, fit_transform)
from prefill_router.router.checkpoint import load_router, save_router, verify_router
from prefill_router.router.ensemble import Ensemble, RouterBundle, TrainReport, prompt_hashes, split_record
from prefill_router.router.model import SharedTrunkNet, TrunkConfig, apply, init_params, masked_bce
from prefill_router.router.policies import (apply_fallback, mean_cost, normalised_costs, route_argmax, route_budget,
                                            route_tolerance, route_utility, tolerance_grid)
from prefill_router.router.train import TrainConfig, train_ensemble, train_ensembles, train_seeds_sequential

fit_blocks = build_design  # name used in docs/ARCHITECTURE.md

__all__ = [
    "BlockSpec", "FeatureSource", "FittedTransform", "SharedBlockSpec", "apply_design", "build_design", "fit_blocks",
    "fit_transform", "Ensemble", "RouterBundle", "TrainReport", "SharedTrunkNet", "TrunkConfig", "apply",
    "init_params", "masked_bce", "apply_fallback", "mean_cost", "normalised_costs", "route_argmax", "route_budget",
    "route_tolerance", "route_utility", "tolerance_grid", "TrainConfig", "train_ensemble", "train_ensembles",
    "train_seeds_sequential",
    "save_router", "load_router", "verify_router", "prompt_hashes", "split_record",
]
