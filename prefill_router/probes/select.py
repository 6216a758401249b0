"""Per-target layer selection from a `ProbeTable` (method.md section 3).

The table must come from TRAINING rows only (the caller passes them to `run_probes`); selecting on
validation or test rows would leak. Candidates are (encoder, layer, pooling) for 'fisher' and
'fisher_diag', and (encoder, layer, pooling, pca_dim) for 'cv_auc' (every width of the CV grid).
Score ties go to the shallower layer (smaller relative depth, then smaller layer index), then the smaller
PCA width, then table order. Invalid (NaN/None) scores are never selected.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from prefill_router.probes.table import ProbeTable

CRITERIA = {"fisher": "fisher_j", "fisher_diag": "fisher_j_diag", "cv_auc": "cv_auc"}


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """One selected (encoder, layer, pooling[, pca_dim]) for a target, with its score."""
    target: str
    encoder: str
    pooling: str
    layer: int
    rel_depth: float
    criterion: str
    score: float
    pca_dim: int | None = None


def _candidates(table: ProbeTable, target: str, criterion: str) -> list[tuple[tuple, LayerChoice]]:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
    out = []
    for order, r in enumerate(table.rows(target=target)):
        if criterion == "cv_auc":
            if "cv_auc_by_pca" not in r:
                raise ValueError("the table has no CV-AUC; rerun run_probes with cv_auc=True")
            scored = [(None if p == "None" else int(p), a) for p, a in r["cv_auc_by_pca"].items()]
        else:
            scored = [(None, r[CRITERIA[criterion]])]
        for pca_dim, score in scored:
            if score is None or not math.isfinite(score):
                continue
            choice = LayerChoice(target=target, encoder=r["encoder"], pooling=r["pooling"], layer=r["layer"],
                                 rel_depth=r["rel_depth"], criterion=criterion, score=float(score),
                                 pca_dim=pca_dim)
            key = (-score, r["rel_depth"], r["layer"], -1 if pca_dim is None else pca_dim, order)
            out.append((key, choice))
    out.sort(key=lambda kc: kc[0])
    return out


def top_k(table: ProbeTable, target: str, criterion: str = "fisher", k: int = 5) -> list[LayerChoice]:
    """The k best candidates for one target, best first (for sweeps over layers)."""
    return [c for _, c in _candidates(table, target, criterion)[:k]]


def select_layers(table: ProbeTable, criterion: str = "fisher",
                  targets: Sequence[str] | None = None) -> list[LayerChoice]:
    """Argmax of the criterion per target ('fisher' | 'fisher_diag' | 'cv_auc'), in target order.

    Raises ValueError naming the target when it has no valid score (e.g. a class with < 2 labelled rows).
    """
    choices = []
    for target in (targets if targets is not None else table.targets):
        best = top_k(table, target, criterion, 1)
        if not best:
            raise ValueError(f"target {target!r} has no valid {criterion} score (a class with < 2 labelled "
                             "training rows?); drop the target or add labels")
        choices.append(best[0])
    return choices


__all__ = ["LayerChoice", "select_layers", "top_k", "CRITERIA"]
