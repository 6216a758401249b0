"""Run a config's sweep locally, resumably, and aggregate a leaderboard.

    python -m launch.sweep --config=configs/llmrouter_pool.py:runlocal --workdir=runs/sweep

The config module's ``sweep(add)`` calls ``add(name=..., **overrides)`` once per run, with
dotted config fields as keys (``add(name='L12_last', **{'router.layout': 'shared'})``). Each run
is ``python -m experiments.main --config=<file>:<arg> --config.<field>=<value> ... --workdir=<workdir>/<name>``.
A run whose ``metrics.json`` exists (written last, when a run completes) and whose command is the one
recorded in its ``sweep_run.json`` is skipped, so an interrupted sweep continues where it stopped (a run
that crashed is retried). A run whose command changed is rerun; ``--overwrite`` lets it replace the old
outputs (without it experiments.main refuses the changed config, naming the flag). Runs share the encoder feature cache, so a sweep over layer
combinations extracts features once.

Outputs in ``--workdir``: ``leaderboard.json``, ``leaderboard.md`` and ``leaderboard.png``, one row
per finished run with its headline metrics, sorted best first by ``--rank_by`` (a ``headline.<metric>``
of metrics.json, see ``prefill_router.evaluation.leaderboard``; an unknown name fails before any run).
"""
import importlib.util
import json
import pathlib
import re
import subprocess
import sys

from absl import flags, logging

from prefill_router import cli, fileio
from prefill_router.evaluation import leaderboard as leaderboard_lib

_CONFIG = flags.DEFINE_string("config", None, "Config file with a sweep(add) function, optionally ':arg'.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Parent directory; each run writes to <workdir>/<name>.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands without running them.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rerun runs whose command changed, replacing their outputs.")
_RANK_BY = flags.DEFINE_string("rank_by", leaderboard_lib.DEFAULT_RANK_BY,
                               "Headline metric of metrics.json to sort by, best first: headline.<metric>.")
flags.mark_flags_as_required(["config", "workdir"])


def load_sweep(config_arg: str) -> tuple[pathlib.Path, str, list[dict]]:
    """Returns (config file, its arg, [run overrides with 'name']) from the module's sweep(add)."""
    path_text, _, arg = config_arg.partition(":")
    path = pathlib.Path(path_text).resolve()
    if not path.is_file():
        raise ValueError(f"config file {path_text} not found")
    spec = importlib.util.spec_from_file_location("sweep_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "sweep"):
        raise ValueError(f"{path_text} defines no sweep(add) function; nothing to sweep")
    runs = []

    def add(name: str | None = None, **overrides):
        runs.append({"name": name or run_name(overrides), **overrides})

    try:
        module.sweep(add, arg) if module.sweep.__code__.co_argcount > 1 else module.sweep(add)
    except TypeError as e:
        raise ValueError(f"{path_text}: sweep(add[, arg]) failed: {e}") from e
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path_text}: sweep produced duplicate run names {sorted(set(n for n in names if names.count(n) > 1))}")
    return path, arg, runs


def run_name(overrides: dict) -> str:
    """A filesystem-safe name from the overrides, e.g. {'probe.top_k': 2} -> 'probe.top_k=2'."""
    text = ",".join(f"{k}={format_value(v)}" for k, v in sorted(overrides.items()))
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", text) or "default"


def format_value(value) -> str:
    """Formats a Python value the way ml_collections' command-line overrides parse it."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(repr(v) if isinstance(v, str) else str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def command(config_path: pathlib.Path, arg: str, run: dict, workdir: pathlib.Path) -> list[str]:
    cmd = [sys.executable, "-m", "experiments.main", f"--config={config_path}" + (f":{arg}" if arg else ""),
           f"--workdir={workdir / run['name']}"]
    cmd += [f"--config.{k}={format_value(v)}" for k, v in run.items() if k != "name"]
    return cmd


RUN_RECORD = "sweep_run.json"  # {"command": [...]}: the experiments.main arguments that produced the run


def is_finished(run_dir: pathlib.Path, cmd: list[str]) -> bool:
    """metrics.json exists and the run's recorded command (if any) equals ``cmd``'s arguments."""
    if not (run_dir / "metrics.json").is_file():
        return False
    record = run_dir / RUN_RECORD
    return not record.is_file() or json.loads(record.read_text()).get("command") == cmd[3:]


def leaderboard(workdir: pathlib.Path, runs: list[dict], rank_by: str) -> list[dict]:
    """Rows of finished runs (name, overrides, metrics.json's headline), sorted best first by ``rank_by``."""
    rows = []
    for run in runs:
        path = workdir / run["name"] / "metrics.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        rows.append({"name": run["name"], "overrides": {k: v for k, v in run.items() if k != "name"},
                     "headline": metrics.get("headline", {})})
    return leaderboard_lib.rank_rows(rows, rank_by)


def main(argv):
    del argv
    leaderboard_lib.metric_name(_RANK_BY.value)  # an unknown metric fails before any run
    workdir = pathlib.Path(_WORKDIR.value).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path, arg, runs = load_sweep(_CONFIG.value)
    logging.info("Sweep of %d runs from %s", len(runs), config_path)
    failed = []
    for i, run in enumerate(runs, 1):
        cmd = command(config_path, arg, run, workdir)
        run_dir = workdir / run["name"]
        if is_finished(run_dir, cmd):
            logging.info("[%d/%d] %s: finished earlier, skipped", i, len(runs), run["name"])
            continue
        if (run_dir / "metrics.json").is_file():
            logging.warning("[%d/%d] %s: its command changed since it finished; rerunning%s", i, len(runs),
                            run["name"], "" if _OVERWRITE.value else " (pass --overwrite to replace its outputs)")
        cmd += ["--overwrite"] if _OVERWRITE.value else []
        logging.info("[%d/%d] %s: %s", i, len(runs), run["name"], " ".join(cmd))
        if _DRY_RUN.value:
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write_json(run_dir / RUN_RECORD, {"command": command(config_path, arg, run, workdir)[3:]})
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(run["name"])
            logging.error("run %s failed; rerun the sweep to retry it", run["name"])
    rows = leaderboard(workdir, runs, _RANK_BY.value)
    leaderboard_lib.write_leaderboard(workdir, rows, _RANK_BY.value)
    logging.info("Leaderboard of %d finished runs: %s", len(rows), workdir / "leaderboard.md")
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    cli.run(main)
