"""End to end: a router trained without one target gets it back from a long-format labels file; the new checkpoint
routes and evaluates like any other, its old targets' predictions are unchanged; bad input gives one-line errors."""
import csv
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import add_target as add_config
from configs import default as default_config

REPO = pathlib.Path(__file__).resolve().parents[2]
NEW = "tiny_gemma3"


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def old_router(tmp_path_factory):
    """The runlocal pipeline's router trained on the other two tiny targets (tiny_gemma3 dropped)."""
    workdir = tmp_path_factory.mktemp("without")
    proc = _run("-m", "experiments.main", "--config=configs/default.py:runlocal", f"--workdir={workdir}",
                f"--config.data.drop_targets=('{NEW}',)")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir / "router"


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory):
    """Long-format labels of tiny_gemma3 on the runlocal TRAINING prompts, and a price file."""
    from prefill_router import stages
    split = stages.load_split(default_config.get_config("runlocal"))
    ds, j = split.ds, split.ds.targets.index(NEW)
    out = tmp_path_factory.mktemp("labels")
    with open(out / "new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "model", "is_correct", "output_tokens"])
        for i in split.train:
            w.writerow([ds.prompts[i], NEW, int(ds.labels[i, j]), 7])
    (out / "prices.json").write_text(json.dumps({NEW: [0.5, 1.5]}))
    return out


def test_added_target_routes_and_evaluates(old_router, labels_file, tmp_path):
    from prefill_router.predict import RouterPredictor
    proc = _run("-m", "experiments.main", f"--config=configs/add_target.py:checkpoint={old_router},"
                f"labels={labels_file / 'new.csv'}", f"--config.data.prices={labels_file / 'prices.json'}",
                f"--workdir={tmp_path / 'add'}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((tmp_path / "add" / "metrics.json").read_text())
    assert metrics["targets"][-1] == NEW and metrics["mode"] == "head" and metrics["drift_old_max"] == 0.0
    new_router = tmp_path / "add" / "router"
    prompts = ["What is 17 * 23?", "Name the capital of France.", "Sort the list 3, 1, 2."]
    old_p = RouterPredictor.load(old_router).predict(prompts)
    new_p = RouterPredictor.load(new_router).predict(prompts)
    np.testing.assert_array_equal(new_p[:, :-1], old_p)  # never-seen prompts: features computed on the fly
    proc = _run("-m", "experiments.route", f"--checkpoint={new_router}", "--prompt", prompts[0])
    assert proc.returncode == 0 and NEW in proc.stdout, proc.stderr[-2000:]
    proc = _run("-m", "experiments.main", f"--config=configs/evaluate.py:checkpoint={new_router},runlocal",
                f"--workdir={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())["router"]
    assert NEW in result["target_names"] and np.isfinite(result["headline"]["router_acc"]["value"])


def _config(**add):
    c = add_config.get_config("runlocal")
    c.unlock()
    c.add.update(add)
    return c


def test_bad_input_is_named(old_router, labels_file, tmp_path):
    from experiments import add_target
    from prefill_router import router as router_lib
    kw = {"labels": str(labels_file / "new.csv")}
    c = _config(checkpoint=str(old_router), name="tiny_llama", **kw)
    c.data.prices = str(labels_file / "prices.json")
    with pytest.raises(ValueError, match="'tiny_llama' already exists"):
        add_target.run(c, tmp_path)
    c = _config(checkpoint=str(old_router), num_labels=3, **kw)
    c.data.prices = str(labels_file / "prices.json")
    with pytest.raises(ValueError, match="3 labelled prompts .*two-class fit needs >= 8"):
        add_target.run(c, tmp_path)
    bundle = router_lib.load_router(old_router)  # the same router, reading an encoder this installation lacks
    bundle.blocks = [dataclasses.replace(b, encoder="gone_llm") for b in bundle.blocks]
    bundle.encoders = {"gone_llm": {}}
    router_lib.save_router(tmp_path / "gone", bundle)
    c = _config(checkpoint=str(tmp_path / "gone"), **kw)
    with pytest.raises(ValueError, match="encoder 'gone_llm', which is not available"):
        add_target.run(c, tmp_path)
