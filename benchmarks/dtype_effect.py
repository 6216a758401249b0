"""Effect of the extraction compute dtype on what the features are used for: probe CV-AUC and router AUC.

    python benchmarks/dtype_effect.py --config=configs/default.py --workdir=/tmp/dtype_effect
    python benchmarks/dtype_effect.py --config=configs/llmrouter_pool.py:encoders=smollm2_135m,max_train=1000 ...

Runs the pipeline (``experiments.main``) on the config once per dtype (``--config.extract.dtype``; workdirs
``WORKDIR/<dtype>``; features come from the shared store, so a dtype extracted before is not recomputed),
then compares each dtype with the first (float32):
  * probe CV-AUC of every (encoder, layer, pooling, target) cell: max |diff|, and per target the best cell's
    CV-AUC in each dtype (the layer choice's input);
  * the router's test mean AUC (headline auc_mean) and router accuracy.
Prints whether every difference is within `--bound` (issue #17.2: 0.005).

    python benchmarks/dtype_effect.py --config=configs/llmrouter_pool.py:encoders=smollm2_135m,max_train=1000 \
        --probes_only --layer_stride=4

`--probes_only`: no pipeline runs; the config's training rows are extracted in each dtype (the store reuses
what exists) and probe CV-AUC (the pipeline's folds, first `cv_pca_dims` width) is compared on every
`layer_stride`-th layer and both poolings, per target (best cell) and over all cells.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(config: str, workdir: pathlib.Path, dtype: str) -> None:
    if (workdir / "metrics.json").exists():
        print(f"{dtype}: reusing the finished run in {workdir}")
        return
    cmd = [sys.executable, "-m", "experiments.main", f"--config={config}", f"--workdir={workdir}",
           f"--config.extract.dtype={dtype}"]
    print("running:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{dtype} run failed:\n{proc.stderr[-3000:]}")


def _cv_auc(workdir: pathlib.Path) -> dict:
    records = json.loads((workdir / "probes" / "probes.json").read_text())["records"]
    return {(r["encoder"], r["pooling"], r["layer"], r["target"]): r.get("cv_auc") for r in records}


def _probes_only(spec: str, dtypes: list[str], stride: int, bound: float) -> None:
    import numpy as np
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # configs/ and benchmarks/common.py
    import common
    from prefill_router import paths, stages
    from prefill_router.encoders import registry
    from prefill_router.features.extract import extract_features
    from prefill_router.probes.cv_auc import cv_auc
    config = common.load_config(spec)
    ds = stages.load_routing_data(config)
    rows = ds.rows("train")
    prompts = [ds.prompts[i] for i in rows]
    Y, M = np.where(ds.mask[rows], ds.labels[rows], 0.0), ds.mask[rows]
    enc = registry.load_encoder(config.encoders[0], cache_dir=config.cache_dir or None)
    aucs = {}
    for dtype in dtypes:
        fs = extract_features(enc, prompts, store_dir=paths.cache_dir(config.cache_dir or None) / "features",
                              batch_tokens=config.extract.batch_tokens, max_length=config.extract.max_length,
                              dtype=dtype, template_kwargs=config.extract.template_kwargs.to_dict(), progress=False)
        layers = fs.layers[1::stride].tolist()
        print(f"{dtype}: {len(rows)} training rows, computed {fs.stats['prompts_computed']} "
              f"({fs.stats['tokens_per_s']:.0f} tokens/s), layers {layers}", flush=True)
        aucs[dtype] = {pool: cv_auc(fs.get(pool, layers), Y, M, pca_dims=int(config.probe.cv_pca_dims[0]),
                                           n_splits=config.probe.cv_folds, seed=config.seed)
                       for pool in ("last", "mean")}
    ref = dtypes[0]
    ok = True
    for dtype in dtypes[1:]:
        diff = np.concatenate([(aucs[dtype][p] - aucs[ref][p]).ravel() for p in ("last", "mean")])
        diff = diff[np.isfinite(diff)]
        print(f"\n{dtype} vs {ref}: probe CV-AUC over {diff.size} cells: max |diff| {np.abs(diff).max():.4f}, "
              f"mean |diff| {np.abs(diff).mean():.4f}")
        for k, target in enumerate(ds.targets):
            best = {d: np.nanmax([aucs[d][p][:, k] for p in ("last", "mean")]) for d in (ref, dtype)}
            ok &= abs(best[dtype] - best[ref]) <= bound or not np.isfinite(best[ref])
            print(f"  {target:34s} best CV-AUC {ref} {best[ref]:.4f}, {dtype} {best[dtype]:.4f}, diff "
                  f"{best[dtype] - best[ref]:+.4f}")
    print(f"\nWITHIN BOUND {bound}: {'yes' if ok else 'no'} (best probe CV-AUC per target; router not run)")


def main() -> None:
    args = dict(a.lstrip("-").split("=", 1) if "=" in a else (a.lstrip("-"), "1") for a in sys.argv[1:])
    if "config" not in args or ("workdir" not in args and "probes_only" not in args):
        raise SystemExit(__doc__)
    dtypes = args.get("dtypes", "float32,bfloat16").split(",")
    bound = float(args.get("bound", 0.005))
    if args.get("probes_only"):
        return _probes_only(args["config"], dtypes, int(args.get("layer_stride", 4)), bound)
    root = pathlib.Path(args["workdir"]).expanduser().resolve()
    for dtype in dtypes:
        _run(args["config"], root / dtype, dtype)
    ref = dtypes[0]
    ref_auc = _cv_auc(root / ref)
    ref_metrics = json.loads((root / ref / "metrics.json").read_text())["headline"]
    ok = True
    for dtype in dtypes[1:]:
        auc = _cv_auc(root / dtype)
        diffs = [abs(auc[k] - v) for k, v in ref_auc.items() if v is not None and auc.get(k) is not None]
        print(f"\n{dtype} vs {ref}: probe CV-AUC over {len(diffs)} cells: max |diff| {max(diffs):.4f}, "
              f"mean {sum(diffs) / len(diffs):.4f}")
        for target in sorted({k[3] for k in ref_auc}):
            best = {name: max((v, k[:3]) for k, v in table.items() if k[3] == target and v is not None)
                    for name, table in ((ref, ref_auc), (dtype, auc))}
            d = best[dtype][0] - best[ref][0]
            ok &= abs(d) <= bound
            print(f"  {target:34s} best CV-AUC {ref} {best[ref][0]:.4f} {best[ref][1]}, {dtype} {best[dtype][0]:.4f} "
                  f"{best[dtype][1]}: diff {d:+.4f}")
        metrics = json.loads((root / dtype / "metrics.json").read_text())["headline"]
        for key in ("auc_mean", "router_acc"):
            d = metrics[key]["value"] - ref_metrics[key]["value"]
            ok &= key != "auc_mean" or abs(d) <= bound
            print(f"  router {key}: {ref} {ref_metrics[key]['value']:.4f}, {dtype} {metrics[key]['value']:.4f}, "
                  f"diff {d:+.4f}")
    print(f"\nWITHIN BOUND {bound}: {'yes' if ok else 'no'} (best probe CV-AUC per target and router mean AUC)")


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()
