"""launch.sweep: the leaderboard is sorted by the requested headline metric; an unknown --rank_by fails early."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from launch import sweep
from prefill_router.evaluation import leaderboard

REPO = pathlib.Path(__file__).resolve().parents[2]
# run name -> (auc_mean, router_acc) in each finished run's metrics.json (the pipeline's headline schema)
FINISHED = {"fisher-per_target": (0.751, 0.70), "fisher-shared": (0.810, 0.60), "fisher_diag-per_target": (0.780, 0.65),
            "fisher_diag-shared": (0.700, 0.72), "cv_auc-per_target": (0.790, 0.55), "cv_auc-shared": (0.760, 0.68)}


def _finished_sweep(workdir: pathlib.Path) -> None:
    for name, (auc, acc) in FINISHED.items():
        (workdir / name).mkdir(parents=True)
        headline = {"auc_mean": {"value": auc, "ci_low": auc - 0.05, "ci_high": auc + 0.05, "n_nan": 0},
                    "router_acc": {"value": acc, "ci_low": acc - 0.05, "ci_high": acc + 0.05, "n_nan": 0}}
        (workdir / name / "metrics.json").write_text(json.dumps({"headline": headline}))


def _sweep(workdir, *flags):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "launch.sweep", "--config=configs/llmrouter_pool.py:runlocal",
                           f"--workdir={workdir}", *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("rank_by, metric", [(None, "auc_mean"), ("headline.router_acc", "router_acc"),
                                             ("router_acc", "router_acc")])
def test_leaderboard_sorted_by_requested_metric(tmp_path, rank_by, metric):
    _finished_sweep(tmp_path)  # every run finished: the sweep skips them all and only ranks
    proc = _sweep(tmp_path, *([f"--rank_by={rank_by}"] if rank_by else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "leaderboard.json").read_text())
    column = 0 if metric == "auc_mean" else 1
    expected = sorted(FINISHED, key=lambda n: -FINISHED[n][column])
    assert [r["name"] for r in rows] == expected
    assert [r["rank_value"] for r in rows] == [FINISHED[n][column] for n in expected]
    assert f"sorted by `headline.{metric}`" in (tmp_path / "leaderboard.md").read_text()


def test_unknown_rank_by_fails_before_any_run_naming_valid_keys(tmp_path):
    proc = _sweep(tmp_path, "--rank_by=router.mean_auc")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown metric 'router.mean_auc'" in lines[0]
    assert all(f"headline.{k}" in lines[0] for k in leaderboard.HEADLINE)
    assert not any(tmp_path.iterdir())  # nothing ran


def test_rank_rows_puts_missing_and_nan_last():
    rows = [{"name": "a", "headline": {}}, {"name": "b", "headline": {"aiq": {"value": 0.2}}},
            {"name": "c", "headline": {"aiq": 0.5}}, {"name": "d", "headline": {"aiq": {"value": float("nan")}}}]
    ranked = leaderboard.rank_rows(rows, "headline.aiq")
    assert [r["name"] for r in ranked][:2] == ["c", "b"] and {r["name"] for r in ranked[2:]} == {"a", "d"}
    assert sweep.leaderboard(pathlib.Path("/nonexistent"), [{"name": "x"}], "aiq") == []


def test_a_run_whose_command_changed_is_not_skipped(tmp_path):
    _finished_sweep(tmp_path)
    path, arg, runs = sweep.load_sweep("configs/llmrouter_pool.py:runlocal")
    same = sweep.command(path, arg, runs[0], tmp_path)
    (tmp_path / runs[0]["name"] / sweep.RUN_RECORD).write_text(json.dumps({"command": same[3:]}))
    assert sweep.is_finished(tmp_path / runs[0]["name"], same)
    changed = dict(runs[1], **{"router.num_seeds": 4})  # the sweep now runs it with another override
    before = sweep.command(path, arg, runs[1], tmp_path)
    (tmp_path / runs[1]["name"] / sweep.RUN_RECORD).write_text(json.dumps({"command": before[3:]}))
    assert not sweep.is_finished(tmp_path / runs[1]["name"], sweep.command(path, arg, changed, tmp_path))
    assert not sweep.is_finished(tmp_path / "never_ran", same)
