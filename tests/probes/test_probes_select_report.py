"""run_probes (one pass over stacked groups), selection rules and the report files."""
import json

import numpy as np
import pytest

from prefill_router.probes import (ProbeConfig, ProbeTable, agreement_summary, cv_auc, effective_dims, fisher_j,
                                   fisher_j_diag, run_probes, select_layers, stratified_folds, top_k, write_report)

CONFIG = ProbeConfig(cv_pca_dims=(2, 4), cv_folds=3, seed=1)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    N, K = 90, 2
    Y = (rng.random((N, K)) < 0.4).astype(np.float32)
    M = rng.random((N, K)) < 0.9
    feats = {("enc_a", "last"): rng.normal(size=(3, N, 8)), ("enc_a", "mean"): rng.normal(size=(3, N, 8)),
             ("enc_b", "mean"): rng.normal(size=(4, N, 6))}
    feats[("enc_a", "mean")][2, :, :2] += 1.5 * Y[:, :1]   # planted: enc_a/mean/layer 2 for target 0
    feats[("enc_b", "mean")][1, :, 0] += 1.5 * Y[:, 1]     # planted: enc_b/mean/layer 1 for target 1
    feats = {k: v.astype(np.float32) for k, v in feats.items()}
    table = run_probes(feats, Y, M, CONFIG, targets=["gpt", "llama"],
                       layer_ids={("enc_b", "mean"): [2, 4, 6, 8]}, n_layers={"enc_a": 3, "enc_b": 8})
    return feats, Y, M, table


def test_table_matches_standalone_functions(setup):
    feats, Y, M, table = setup
    assert len(table.records) == (3 + 3 + 4) * 2
    X = feats[("enc_b", "mean")]
    J, Jd = fisher_j(X, Y, M), fisher_j_diag(X, Y, M)
    folds = stratified_folds(Y, M, CONFIG.cv_folds, CONFIG.seed)
    auc = cv_auc(X, Y, M, folds, pca_dims=CONFIG.cv_pca_dims)
    dims = effective_dims(X)
    for i, layer in enumerate([2, 4, 6, 8]):
        for k, t in enumerate(["gpt", "llama"]):
            (r,) = table.rows(encoder="enc_b", pooling="mean", layer=layer, target=t)
            assert r["rel_depth"] == layer / 8
            assert r["fisher_j"] == pytest.approx(J[i, k], rel=1e-4)
            assert r["fisher_j_diag"] == pytest.approx(Jd[i, k], rel=1e-4)
            assert r["cv_auc_by_pca"]["4"] == pytest.approx(auc[i, k, 1], abs=1e-5)
            assert r["cv_auc"] == pytest.approx(np.nanmax(auc[i, k]), abs=1e-5)
            assert r["d_eff_pr"] == pytest.approx(dims["d_eff_pr"][i], rel=1e-4)
    assert ProbeTable.from_json(table.to_json()).records == json.loads(table.to_json())["records"]


def test_selection_finds_planted_layers(setup):
    *_, table = setup
    for criterion in ("fisher", "fisher_diag", "cv_auc"):
        a, b = select_layers(table, criterion)
        assert (a.target, a.encoder, a.pooling, a.layer) == ("gpt", "enc_a", "mean", 2)
        assert (b.target, b.encoder, b.pooling, b.layer) == ("llama", "enc_b", "mean", 4)
    best = top_k(table, "gpt", "cv_auc", 3)
    assert best[0].pca_dim in (2, 4) and best[0].score >= best[1].score >= best[2].score


def _rec(layer, score, enc="e", target="t"):
    return {"encoder": enc, "pooling": "mean", "layer": layer, "rel_depth": layer / 10, "target": target,
            "fisher_j": score, "fisher_j_diag": score, "cv_auc_by_pca": {"50": score, "100": score},
            "cv_auc": score}


def test_ties_go_to_shallower_layer_and_smaller_pca_and_nan_raises():
    table = ProbeTable([_rec(5, 1.0), _rec(3, 1.0), _rec(7, 0.5), _rec(1, None, target="u")], {}, ["t", "u"])
    assert select_layers(table, "fisher", ["t"])[0].layer == 3
    c = select_layers(table, "cv_auc", ["t"])[0]
    assert (c.layer, c.pca_dim) == (3, 50)
    assert [x.layer for x in top_k(table, "t", "fisher", 3)] == [3, 5, 7]
    with pytest.raises(ValueError, match="'u' has no valid"):
        select_layers(table, "fisher")
    with pytest.raises(ValueError, match="criterion"):
        select_layers(table, "bogus")


def test_agreement_summary_spearman_gives_ties_their_average_rank():
    """J = (1, 2, 2, 3), CV-AUC = (.1, .3, .2, .4): ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4), rho = 4.5 / sqrt(4.5 * 5)
    = 0.949 (ranking the tie in input order would give 0.8)."""
    records = [dict(_rec(layer, j), cv_auc=a) for layer, j, a in ((1, 1.0, .1), (2, 2.0, .3), (3, 2.0, .2), (4, 3.0, .4))]
    summary = agreement_summary(ProbeTable(records, {}, ["t"]))
    assert "Spearman(J, CV-AUC) over 4 candidates = 0.949." in summary


def test_write_report(setup, tmp_path):
    *_, table = setup
    paths = write_report(table, tmp_path)
    assert json.loads(paths["json"].read_text())["targets"] == ["gpt", "llama"]
    md = paths["markdown"].read_text()
    assert "agree" in md and md.count("\n| enc_") == len(table.records)
    assert len(paths["heatmaps"]) == 2 * 3 and len(paths["depth_curves"]) == 2
    for p in paths["heatmaps"] + paths["depth_curves"]:
        assert p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG"
