"""Evaluation of routers: per-target, routing, curve and calibration metrics with bootstrap CIs.

Modules: ``metrics`` (AUC, Brier, accuracies, gap captured, cost savings, diagnostics), ``calibration``
(ECE, reliability data), ``curves`` (tolerance/λ sweeps, P-AUCCC family, AIQ, APGR/CPT), ``bootstrap``
(percentile CIs, paired tests), ``report`` (``evaluate_router``, ``compare_routers``, Markdown/JSON),
``plots`` (figures; imports matplotlib, so it is not imported here). Not imported here either: ``operating``,
``rewards``, ``leaderboard``, ``lengths`` (output-length prediction error).
"""
from prefill_router.evaluation import bootstrap, calibration, curves, metrics, report
from prefill_router.evaluation.report import compare_routers, evaluate_router, markdown_report

__all__ = ["bootstrap", "calibration", "curves", "metrics", "report", "evaluate_router", "compare_routers",
           "markdown_report"]
