"""The transfer experiment: its config and the runlocal run."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import transfer as transfer_config

REPO = pathlib.Path(__file__).resolve().parents[2]


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
