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


def main() -> None:
    args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:])
    if "config" not in args or "workdir" not in args:
        raise SystemExit(__doc__)
    dtypes = args.get("dtypes", "float32,bfloat16").split(",")
    bound = float(args.get("bound", 0.005))
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
