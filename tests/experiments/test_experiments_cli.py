"""End to end: the runlocal pipeline, evaluation from its checkpoint, the route CLI, and one-line errors."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(*args, timeout=600, cache=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if cache is not None:  # a private cache: the run fetches and computes everything itself
        env["PREFILL_ROUTER_CACHE"] = str(cache)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def runlocal_workdir(tmp_path_factory, cache):
    workdir = tmp_path_factory.mktemp("runlocal")
    proc = _run("-m", "experiments.main", "--config=configs/default.py:runlocal", f"--workdir={workdir}",
                cache=cache)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


def test_runlocal_pipeline_writes_all_artifacts(runlocal_workdir):
    for name in ("config.json", "metrics.json", "report.md", "data_stats.json", "probes/probes.json",
                 "router/router.json"):
        assert (runlocal_workdir / name).is_file(), name
    # metrics.json marks a complete run (launch.sweep skips such runs), so it is written last
    assert (runlocal_workdir / "metrics.json").stat().st_mtime_ns >= (runlocal_workdir / "report.md").stat().st_mtime_ns
    metrics = json.loads((runlocal_workdir / "metrics.json").read_text())
    assert {"router_acc", "oracle_acc", "best_single_acc"} <= set(metrics["headline"])
    assert set(metrics["comparison"]["rows"]) >= {"SharedTrunkNet", "MF"}
    assert metrics["router"]["counts"]["n_rows"] > 0
    assert (runlocal_workdir / "plots" / "routers_cost_accuracy_price.png").is_file()  # all routers in one figure
    report = (runlocal_workdir / "report.md").read_text()
    assert "Routers on the test split" in report and "Selected layers" in report
    # controls: task lookups in every comparison, within-task AUC, the paired test against the lookup
    assert {"within_task_auc_mean", "disagree_router_acc", "vs_task_lookup"} <= set(metrics["headline"])
    assert {"task lookup", "task × difficulty lookup"} <= set(metrics["comparison"]["rows"])
    assert metrics["comparison"]["reference"] == "task lookup" and metrics["controls"]["has_difficulty"]
    assert "Controls: prefill signal vs task identity" in report and "Paired bootstrap, SharedTrunkNet" in report


def test_evaluate_from_checkpoint_reproduces_the_pipeline_predictions(runlocal_workdir, cache, tmp_path):
    proc = _run("-m", "experiments.main", f"--config=configs/evaluate.py:checkpoint={runlocal_workdir / 'router'},runlocal",
                f"--workdir={tmp_path}", cache=cache)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ours = json.loads((tmp_path / "metrics.json").read_text())["router"]["headline"]
    pipe = json.loads((runlocal_workdir / "metrics.json").read_text())["router"]["headline"]
    for key in ("router_acc", "brier_mean", "tol/router_acc"):
        assert ours[key]["value"] == pytest.approx(pipe[key]["value"], abs=1e-6), key


def test_evaluate_refuses_rows_the_checkpoint_trained_on(cache, tmp_path):
    """The issue's repro: a router trained with seed=3, evaluated with the default seed (another split of the
    same items, so some 'test' rows trained it) is refused before any feature is extracted."""
    proc = _run("-m", "experiments.main", "--config=configs/default.py:runlocal,seed=3", f"--workdir={tmp_path / 'A'}",
                cache=cache)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = _run("-m", "experiments.main", f"--config=configs/evaluate.py:checkpoint={tmp_path / 'A' / 'router'},runlocal",
                f"--workdir={tmp_path / 'eval'}", cache=cache)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "'test' rows are training rows of the checkpoint (trained with seed=3" in errors[0]
    assert "stage features" not in proc.stderr and not (tmp_path / "eval" / "metrics.json").exists()


def test_layer_sweep_trains_all_combinations_and_ranks_them(runlocal_workdir, cache, tmp_path):
    proc = _run("-m", "experiments.main", "--config=configs/layer_sweep.py:runlocal,stride=2",
                f"--workdir={tmp_path}", cache=cache)  # labels and features cached by the pipeline run
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "combinations x 2 seeds of width 4 in one program" in proc.stderr
    rows = json.loads((tmp_path / "leaderboard.json").read_text())
    names = {r["name"] for r in rows}
    assert {"fisher-top1", "fisher-top2", "fisher-top3", "per-target fisher (paper)"} <= names
    assert {"tiny_llama/L0/last", "tiny_llama/L2/mean"} <= names  # every 2nd of layers 0..4, both poolings
    values = [r["rank_value"] for r in rows]
    assert values == sorted(values, reverse=True)
    for r in rows:
        auc = r["headline"]["auc_mean"]
        assert auc["ci_low"] <= auc["value"] <= auc["ci_high"] and r["overrides"]["sources"]
    assert (tmp_path / "leaderboard.md").is_file() and (tmp_path / "leaderboard.png").is_file()
    # ranked on validation rows carved from training; only the winner is scored on test, with the controls
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["selected"]["name"] == rows[0]["name"] and "validation" in metrics["selected"]["selected_on"]
    assert {"auc_mean", "within_task_auc_mean", "vs_task_lookup"} <= set(metrics["selected"]["test"])
    assert "task lookup" in metrics["comparison"]["rows"] and "Layer sweep: the SharedTrunkNet below" in (
        tmp_path / "report.md").read_text()


def test_route_cli_prints_choice_and_probabilities(runlocal_workdir, cache):
    proc = _run("-m", "experiments.route", f"--checkpoint={runlocal_workdir / 'router'}", "--prompt",
                "What is 3 + 4?", "--lam", "0.5", cache=cache)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "route →" in proc.stdout and "P(correct)" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--config=configs/default.py:runlocal,bogus=1"], "unknown config arg 'bogus'"),
    (["--config=configs/does_not_exist.py"], "No such file"),
    (["--config=configs/default.py:runlocal", "--config.experiment=nope"], "unknown experiment 'nope'"),
    (["--config=configs/default.py:runlocal", "--config.router.nope=1"], "unknown config field 'nope'"),
    (["--config=configs/default.py:runlocal", "--bogus_flag"], "Unknown command line flag 'bogus_flag'"),
])
def test_bad_command_lines_fail_with_one_line(args, message, tmp_path):
    proc = _run("-m", "experiments.main", *args, f"--workdir={tmp_path}", timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr.splitlines()[0]


def test_unwritable_workdir_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _run("-m", "experiments.main", "--config=configs/default.py:runlocal", f"--workdir={blocker}/sub",
                timeout=120)
    assert proc.returncode == 2 and "cannot be written" in proc.stderr

