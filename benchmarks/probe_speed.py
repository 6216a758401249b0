"""Layer probes: one JAX pass (`run_probes`) vs the scikit-learn per-(pooling, layer, target) loop.

The scikit-learn loop is the toolkit's criterion done cell by cell: for every fold, StandardScaler -> PCA(p,
random_state=42) -> LogisticRegression(C=1.0, max_iter=500, random_state=42) -> roc_auc_score, for every p
of the grid, on the SAME folds as the JAX pass; plus LinearDiscriminantAnalysis (lsqr, Ledoit-Wolf
shrinkage) on the standardised rows for a J-like separability coef . (mu_1 - mu_0).

    python benchmarks/probe_speed.py --synthetic                       # 31 layers x 2 poolings x 2000 x 576 x 9
    python benchmarks/probe_speed.py --synthetic --sklearn-cells 6     # time 6 sklearn cells, extrapolate
    python benchmarks/probe_speed.py --features feats.npz              # keys last/mean [L,N,D], labels, mask
    python benchmarks/probe_speed.py --config configs/llmrouter_pool.py:encoders=smollm2_135m,max_train=1000 \
        --sklearn-targets 1                                            # real features, every cell of 1 target

With --sklearn-cells the sklearn loop runs on that many randomly chosen (pooling, layer, target) cells, with
--sklearn-targets n on every cell of the first n targets; its full time is then EXTRAPOLATED linearly
(printed as such) and the best-layer agreement is reported only for targets whose cells were all run. Wall times include JAX compilation.
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np


def synthetic(L: int, N: int, D: int, K: int, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Residual-stream-like features with planted per-target signal peaking at a target-specific layer.

    x_l = (latent [N, 64] @ A_l + noise) * scale + offset, A_l drifting with depth; target k's label is
    Bernoulli(sigmoid(u_k . latent-ish signal)), and its signal direction is added to layer l with
    strength exp(-(l - l*_k)^2 / 18), so the best layer per target is l*_k (pooling 'mean' slightly better).
    Returns (features {pooling: [L, N, D]}, Y [N, K], M [N, K], l* [K]).
    """
    rng = np.random.default_rng(seed)
    r = 64
    latent = rng.normal(size=(N, r)).astype(np.float32)
    logits = latent[:, :K] * 1.5 + rng.normal(size=(N, K)).astype(np.float32)
    q = rng.uniform(0.3, 0.7, K)
    Y = (logits > np.stack([np.quantile(logits[:, k], q[k]) for k in range(K)])).astype(np.float32)
    M = rng.random((N, K)) < 0.95
    peaks = rng.integers(L // 4, L - 2, size=K)
    base = rng.normal(size=(r, D)).astype(np.float32) / np.sqrt(r)
    sig_dirs = rng.normal(size=(K, D)).astype(np.float32)
    scale = rng.lognormal(0.0, 1.0, D).astype(np.float32)
    feats = {}
    for p, pooling in enumerate(("last", "mean")):
        X = np.empty((L, N, D), np.float32)
        for layer in range(L):
            drift = base + 0.05 * layer * rng.normal(size=(r, D)).astype(np.float32) / np.sqrt(r)
            x = latent @ drift + rng.normal(size=(N, D)).astype(np.float32)
            strength = np.exp(-((layer - peaks) ** 2) / 18.0) * (0.8 + 0.3 * p)
            x += ((Y - Y.mean(0)) * strength) @ sig_dirs * 0.15
            X[layer] = x * scale + 3.0 * layer
        feats[pooling] = X
    return feats, Y, M, peaks


def load_npz(path: str) -> tuple[dict, np.ndarray, np.ndarray]:
    with np.load(path) as d:
        feats = {k: np.asarray(d[k], np.float32) for k in ("last", "mean") if k in d}
        if not feats or "labels" not in d or "mask" not in d:
            raise ValueError(f"{path} must hold 'last' and/or 'mean' [L,N,D], 'labels' [N,K], 'mask' [N,K]")
        Y = np.asarray(d["labels"], np.float32)
        M = np.asarray(d["mask"], bool)
    return feats, np.where(M, Y, 0.0), M


def config_features(spec: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Training-row features {pooling: [L, N, D]} of the config's first encoder, with its labels and mask."""
    from common import training_data
    data = training_data(spec)
    return {p: data.features.get(p)[:, data.rows] for p in ("last", "mean")}, data.Y, data.M


def sklearn_cell(x, y, m, fid, n_splits, pca_dims):
    """The toolkit's CV-AUC per PCA width for one (pooling, layer, target), and the LDA J-like score."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    aucs = np.zeros(len(pca_dims))
    for f in range(n_splits):
        tr, te = m & (fid != f) & (fid >= 0), fid == f
        sc = StandardScaler().fit(x[tr])
        a, b = sc.transform(x[tr]), sc.transform(x[te])
        for j, p in enumerate(pca_dims):
            pca = PCA(n_components=p, random_state=42).fit(a)
            clf = LogisticRegression(C=1.0, max_iter=500, random_state=42).fit(pca.transform(a), y[tr])
            aucs[j] += roc_auc_score(y[te], clf.decision_function(pca.transform(b))) / n_splits
    z = StandardScaler().fit_transform(x[m])
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(z, y[m])
    delta = z[y[m] == 1].mean(0) - z[y[m] == 0].mean(0)
    return aucs, float(lda.coef_[0] @ delta)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help=".npz with last/mean [L,N,D], labels [N,K], mask [N,K]")
    src.add_argument("--synthetic", action="store_true")
    src.add_argument("--config", help="pipeline config file[:args]: the training rows of its first encoder's "
                                      "features (from the feature cache; extracted if missing)")
    ap.add_argument("--layers", type=int, default=31)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--targets", type=int, default=9)
    ap.add_argument("--pca-dims", default="50,100,150,200,300")
    ap.add_argument("--sklearn-cells", type=int, default=0, help="0: run every cell; n: time n cells and extrapolate")
    ap.add_argument("--sklearn-targets", type=int, default=0,
                    help="n > 0: run every cell of the first n targets only (full layer-choice check), extrapolate")
    ap.add_argument("--max-bytes", type=float, default=2.0, help="GiB per compiled layer chunk")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import jax
    jax.config.update("jax_default_matmul_precision", "highest")
    from prefill_router.probes import ProbeConfig, run_probes, select_layers, stratified_folds

    if args.synthetic:
        feats, Y, M, peaks = synthetic(args.layers, args.n, args.d, args.targets, args.seed)
        print(f"synthetic: planted best layers per target {peaks.tolist()}")
    elif args.config:
        feats, Y, M = config_features(args.config)
    else:
        feats, Y, M = load_npz(args.features)
    poolings = list(feats)
    L, N, D = feats[poolings[0]].shape
    K = Y.shape[1]
    pca_dims = tuple(int(p) for p in args.pca_dims.split(","))
    print(f"shape: {len(poolings)} poolings x {L} layers x N={N} x D={D}, K={K} targets, PCA grid {pca_dims}, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}")
    config = ProbeConfig(cv_pca_dims=pca_dims, max_bytes=int(args.max_bytes * 2**30))
    folds = stratified_folds(Y, M, config.cv_folds, config.seed)

    # ---- JAX: everything in one pass ----
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    table = run_probes({("enc", p): feats[p] for p in poolings}, Y, M, config)
    t_jax = time.perf_counter() - t0
    rss_jax = peak_rss_mib()
    print(f"JAX run_probes (J, J_diag, d_eff x2, CV-AUC grid): {t_jax:.1f} s incl. compile; "
          f"peak RSS {rss_jax:.0f} MiB (+{rss_jax - rss0:.0f})")

    # ---- scikit-learn: cell by cell ----
    cells = [(p, l, k) for p in poolings for l in range(L) for k in range(K)]
    rng = np.random.default_rng(args.seed)
    if args.sklearn_targets > 0:
        run = [c for c in cells if c[2] < args.sklearn_targets]
    elif args.sklearn_cells > 0:
        run = [cells[i] for i in sorted(rng.choice(len(cells), min(args.sklearn_cells, len(cells)), replace=False))]
    else:
        run = cells
    tracemalloc.start()
    t0 = time.perf_counter()
    sk = {}
    for p, l, k in run:
        sk[(p, l, k)] = sklearn_cell(feats[p][l], Y[:, k], M[:, k], folds.ids[:, k], int(folds.n_splits[k]),
                                     pca_dims)
    t_sk = time.perf_counter() - t0
    _, sk_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    extrap = len(run) < len(cells)
    t_sk_full = t_sk * len(cells) / max(len(run), 1)
    print(f"sklearn loop: {t_sk:.1f} s for {len(run)}/{len(cells)} cells"
          + (f" -> EXTRAPOLATED to all cells: {t_sk_full:.0f} s" if extrap else "")
          + f"; python-heap peak (tracemalloc) {sk_peak / 2**20:.0f} MiB; peak RSS now {peak_rss_mib():.0f} MiB")
    print(f"speed-up (sklearn{' extrapolated' if extrap else ''} / JAX): {t_sk_full / t_jax:.1f}x")

    # ---- agreement on the computed cells ----
    diffs = []
    for (p, l, k), (aucs, _) in sk.items():
        (r,) = table.rows(pooling=p, layer=l, target=f"t{k}")
        diffs += [abs(r["cv_auc_by_pca"][str(d)] - a) for d, a in zip(pca_dims, aucs)]
    print(f"max |CV-AUC JAX - sklearn| over {len(diffs)} (cell, PCA) values: {max(diffs):.2e}")
    complete = [k for k in range(K) if all((p, l, k) in sk for p in poolings for l in range(L))]
    pick_j = {c.target: c for c in select_layers(table, "fisher")}
    pick_a = {c.target: c for c in select_layers(table, "cv_auc")}
    for k in range(K):
        line = (f"t{k}: JAX J -> {pick_j[f't{k}'].pooling}/L{pick_j[f't{k}'].layer}, "
                f"JAX CV-AUC -> {pick_a[f't{k}'].pooling}/L{pick_a[f't{k}'].layer}/PCA{pick_a[f't{k}'].pca_dim}")
        if k in complete:
            best_auc = max(((sk[(p, l, k)][0][j], -l, -pca_dims[j], p, l, pca_dims[j]) for p in poolings
                            for l in range(L) for j in range(len(pca_dims))))
            best_lda = max(((sk[(p, l, k)][1], -l, p, l) for p in poolings for l in range(L)))
            same_a = (best_auc[3], best_auc[4], best_auc[5]) == (pick_a[f"t{k}"].pooling, pick_a[f"t{k}"].layer,
                                                                 pick_a[f"t{k}"].pca_dim)
            same_j = (best_lda[2], best_lda[3]) == (pick_j[f"t{k}"].pooling, pick_j[f"t{k}"].layer)
            line += (f" | sklearn CV-AUC -> {best_auc[3]}/L{best_auc[4]}/PCA{best_auc[5]} (same: {same_a}), "
                     f"sklearn LDA -> {best_lda[2]}/L{best_lda[3]} (same as J: {same_j})")
        print(line)
    if not complete:
        print("best-layer agreement with sklearn: not checked (no target had all its cells run)")


if __name__ == "__main__":
    main()
