"""Layer probes: Fisher separability J, effective dimensionality, CV logistic ROC-AUC; layer selection.

Pure JAX, vmapped over layers, targets and folds (method.md section 3). Inputs are TRAINING rows only:
X [L, N, D], Y [N, K] in {0, 1}, M [N, K] bool (missing labels are excluded per target).

    fisher_j(X, Y, M) -> [L, K]            fisher_j_diag(X, Y, M) -> [L, K]
    participation_ratio(X) -> [L]          entropy_dim(X) -> [L]       effective_dims(X) -> dict
    cv_auc(X, Y, M, folds) -> [L, K] (or [L, K, P] for a PCA grid)      roc_auc(scores, y, mask)
    fit_scaler_pca(x, k) -> ScalerPCA    fit_linear_probe(x, y, pca_dim) -> LinearProbe   (the linear readout)
    run_probes({(encoder, pooling): [L, N, D]}, Y, M, ProbeConfig()) -> ProbeTable
    select_layers(table, 'fisher' | 'fisher_diag' | 'cv_auc') -> [LayerChoice]
    write_report(table, out_dir)
"""
from prefill_router.probes.cv_auc import Folds, cv_auc, roc_auc, stratified_folds
from prefill_router.probes.effdim import effective_dims, entropy_dim, participation_ratio
from prefill_router.probes.fisher import fisher_j, fisher_j_diag, label_validity
from prefill_router.probes.readout import LinearProbe, ScalerPCA, fit_linear_probe, fit_logreg, fit_scaler_pca
from prefill_router.probes.report import agreement_summary, write_report, write_table
from prefill_router.probes.select import LayerChoice, select_layers, top_k
from prefill_router.probes.table import ProbeConfig, ProbeTable, probe_layers, run_probes, stack_feature_groups

__all__ = [
    "Folds", "LayerChoice", "LinearProbe", "ProbeConfig", "ProbeTable", "ScalerPCA", "agreement_summary", "cv_auc",
    "effective_dims", "entropy_dim", "fisher_j", "fisher_j_diag", "fit_linear_probe", "fit_logreg", "fit_scaler_pca",
    "label_validity", "participation_ratio", "probe_layers", "roc_auc", "run_probes", "select_layers", "stack_feature_groups", "stratified_folds",
    "top_k", "write_report", "write_table",
]
