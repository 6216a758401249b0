"""The transfer experiment: its linear probe against scikit-learn, the readout controls, and the runlocal run."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import transfer as transfer_config
from experiments import transfer

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("pca_dim", [None, 3])
def test_linear_probe_matches_sklearn_pipeline(pca_dim):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6)) * np.array([1.0, 5.0, 0.1, 2.0, 1.0, 3.0]) + 4.0
    x[:, 4] = 7.0  # a constant feature: sigma -> 1, as StandardScaler
    y = (x[:, 0] + 0.3 * x[:, 1] + rng.normal(size=60) > 5.0).astype(float)
    xt = rng.normal(size=(25, 6)) * 2.0 + 4.0
    steps = [StandardScaler()] + ([PCA(pca_dim, svd_solver="full")] if pca_dim else []) + [
        LogisticRegression(C=1.0, tol=1e-10, max_iter=1000)]
    ref = make_pipeline(*steps).fit(x, y).decision_function(xt)
    ours = transfer.fit_linear_probe(x, y, pca_dim, C=1.0).scores(xt)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3)


def test_linear_probe_rejects_bad_pca_width():
    with pytest.raises(ValueError, match="pca_dim"):
        transfer.fit_linear_probe(np.zeros((5, 3)), np.array([0, 1, 0, 1, 0.0]), 4)


def test_auc_with_ci_brackets_the_estimate():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1], float)
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.5, 0.3])
    from sklearn.metrics import roc_auc_score
    out = transfer.auc_with_ci(s, y, n_boot=200, seed=0)
    assert out["auc"] == pytest.approx(roc_auc_score(y, s))
    assert out["ci_low"] <= out["auc"] <= out["ci_high"]


def test_readout_controls_change_only_the_prompt_tail():
    from prefill_router.encoders import registry
    enc = registry.load_encoder("tiny_llama")
    q = "What is 2 + 3?\nOptions: 4 | 5"
    chat = transfer.readout_encoder(enc, "chat", {})
    nogen = transfer.readout_encoder(enc, "no_gen_prompt", {})
    raw = transfer.readout_encoder(enc, "raw", {})
    assert chat[0].tokenizer.render(q, chat[1]).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert nogen[0].tokenizer.render(q, nogen[1]).endswith(q + "<|im_end|>\n")
    assert raw[0].tokenizer.render(q, raw[1]) == q
    assert raw[0].identity != enc.identity  # distinct feature-cache key
    with pytest.raises(ValueError, match="template control"):
        transfer.readout_encoder(enc, "bogus", {})


def test_pca_grid_clips_to_data():
    assert transfer.pca_grid((16, 64), D=32, n_fit=20) == (16, 20)
    assert transfer.pca_grid((4,), D=2, n_fit=50) == (2,)


def test_config_defaults_and_args():
    c = transfer_config.get_config("")
    assert c.experiment == "transfer" and c.data.source == "collect"
    assert tuple(c.encoders) == tuple(c.data.targets) == transfer_config.DEFAULT_TARGETS
    c = transfer_config.get_config("runlocal,encoders=tiny_llama,templates=chat+raw")
    assert tuple(c.encoders) == ("tiny_llama",) and tuple(c.data.targets) == transfer_config.TINY
    assert tuple(c.transfer.templates) == ("chat", "raw") and c.data.num_items == 48
    with pytest.raises(ValueError, match="accepted"):
        transfer_config.get_config("encoder=x")


@pytest.mark.slow
def test_runlocal_transfer_writes_the_matrix(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PREFILL_ROUTER_CACHE": str(tmp_path / "cache")}
    workdir = tmp_path / "wd"
    proc = subprocess.run([sys.executable, "-m", "experiments.main", "--config=configs/transfer.py:runlocal",
                           f"--workdir={workdir}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((workdir / "transfer.json").read_text())
    metrics = json.loads((workdir / "metrics.json").read_text())
    config = transfer_config.get_config("runlocal")
    encoders, targets = list(config.encoders), list(config.data.targets)
    controls = [f"{t}/{p}" for t in config.transfer.templates for p in config.transfer.poolings]
    assert result["controls"] == controls and sorted(metrics["headline"]) == sorted(controls)
    assert result["dataset"]["targets"] == targets
    n_finite = 0
    for c in controls:
        m = result["matrices"][c]
        assert m["encoders"] == encoders and m["targets"] == targets
        for key in ("auc", "ci_low", "ci_high", "layer", "rel_depth"):
            assert np.shape(m[key]) == (len(encoders), len(targets)), (c, key)
        for i in range(len(encoders)):
            for k in range(len(targets)):
                a = m["auc"][i][k]
                if a is None:  # NaN (a class empty on the test split): must be marked in the report
                    continue
                n_finite += 1
                assert 0.0 <= a <= 1.0
                assert m["ci_low"][i][k] <= a + 1e-9 and a <= m["ci_high"][i][k] + 1e-9
                assert 0.0 <= m["rel_depth"][i][k] <= 1.0
        assert metrics["headline"][c]["auc"] == m["auc"]
        assert (workdir / "plots" / f"transfer_{c.replace('/', '_')}.png").is_file()
        assert len(result["summary"][c]["per_target"]) == len(targets)  # every target is also an encoder
    assert n_finite > 0
    report = (workdir / "report.md").read_text()
    assert "## Summary" in report and report.count("| encoder \\ target |") == len(controls)
    for c in controls:
        assert f"## Readout {c}" in report
    if any(None in row for c in controls for row in result["matrices"][c]["auc"]):
        assert "NaN" in report
