"""Bad input through the real entry points fails early with one line (exit 2, no traceback); Ctrl-C resumes.

Every case here stops before any expensive stage (no features are extracted)."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from configs import common
from configs import llmrouter_pool

REPO = pathlib.Path(__file__).resolve().parents[2]
PIPELINE = "--config=configs/default.py:runlocal"


def _run(*args, timeout=180, cache=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if cache is not None:
        env["PREFILL_ROUTER_CACHE"] = str(cache)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("args, fragments", [
    # 12: a misspelled override is one clean line with the suggestion
    ([PIPELINE, "--config.router.num_seed=3"],
     ["unknown config field 'num_seed' in a --config.<field> override", 'did you mean "num_seeds"']),
    # 4: an explicit arg next to runlocal is not overridden, so a misspelled encoder is caught
    (["--config=configs/llmrouter_pool.py:runlocal,encoders=tiny_lama"], ["encoders: unknown encoder 'tiny_lama'"]),
    (["--config=configs/default.py:runlocal,encoders=tiny_lama"], ["encoders: unknown encoder 'tiny_lama'"]),
    # 7: values checked before any stage
    ([PIPELINE, "--config.router.keep=5"], ["router.keep=5 must be between 1 and router.num_seeds=2"]),
    ([PIPELINE, "--config.encoders=('nope',)"], ["encoders: unknown encoder 'nope'"]),
    ([PIPELINE, "--config.data.targets=('tiny_llama','gpt5')"], ["data.targets: unknown encoder 'gpt5'"]),
    ([PIPELINE, "--config.probe.criterion=auc"], ["probe.criterion='auc'; choose one of"]),
    ([PIPELINE, "--config.data.source=long"], ["reads a file: set --config.data.path=FILE"]),
    ([PIPELINE, "--config.data.source=long", "--config.data.path=/no/such.csv"],
     ["data.path /no/such.csv does not exist"]),
    ([PIPELINE, "--config.data.prices=/no/prices.json"], ["data.prices file /no/prices.json does not exist"]),
])
def test_config_errors_are_one_line_before_any_stage(args, fragments, tmp_path):
    proc = _run("-m", "experiments.main", *args, f"--workdir={tmp_path}")
    _one_line_error(proc, *fragments)
    assert "stage data" not in proc.stderr


def test_verbose_adds_the_traceback(tmp_path):
    proc = _run("-m", "experiments.main", PIPELINE, "--config.router.keep=5", "--verbose", f"--workdir={tmp_path}")
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: router.keep=5")


def test_scalar_price_file_is_one_line(tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text('{"tiny_llama": 0.5}')
    proc = _run("-m", "experiments.main", PIPELINE, f"--config.data.prices={prices}", f"--workdir={tmp_path / 'w'}")
    _one_line_error(proc, "price of 'tiny_llama' is 0.5; expected a pair [input $/M, output $/M]")


def test_changed_config_in_a_used_workdir_is_refused_at_start(tmp_path):
    """5: a workdir holding another run's config.json stops before any stage, naming the fix."""
    from configs import default
    previous = default.get_config("runlocal").to_dict()
    previous["seed"] = 3  # the run already in the workdir used seed 3
    (tmp_path / "config.json").write_text(json.dumps(previous, default=str))
    (tmp_path / "metrics.json").write_text("{}")
    proc = _run("-m", "experiments.main", PIPELINE, f"--workdir={tmp_path}")
    _one_line_error(proc, "holds a run with another config (seed 3 -> 0)", "--overwrite", "new --workdir")
    assert "stage data" not in proc.stderr and json.loads((tmp_path / "config.json").read_text())["seed"] == 3


def test_overwrite_deletes_only_the_previous_runs_outputs(tmp_path):
    from prefill_router import cli
    for name in ("metrics.json", "report.md", "config.json"):
        (tmp_path / name).write_text("{}")
    for name in ("router", "train_state", "probes"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    cli.check_workdir_config(tmp_path, {}, overwrite=False)  # '{}' == {}: the same config, nothing happens
    assert (tmp_path / "metrics.json").exists()
    with pytest.raises(cli.UsageError, match="seed None -> 1"):
        cli.check_workdir_config(tmp_path, {"seed": 1}, overwrite=False)
    cli.check_workdir_config(tmp_path, {"seed": 1}, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_ctrl_c_prints_resume_hint(tmp_path, shared_data):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PREFILL_ROUTER_CACHE": str(tmp_path / "c"),
           "PREFILL_ROUTER_DATA": str(shared_data)}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.main", "--config=configs/llmrouter_pool.py:runlocal",
                             f"--workdir={tmp_path / 'w'}"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
                            # pytest-xdist workers ignore SIGINT and a child inherits SIG_IGN (then Python installs
                            # no KeyboardInterrupt handler): give the run the default disposition a terminal gives
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:  # wait until the run is inside its first stage (reading the LLMRouter files)
        seen.append(line)
        if "stage data" in line:
            break
    assert seen and "stage data" in seen[-1], "".join(seen)[-3000:]
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"


_CTRL_C_IN_A_GC_CALLBACK = """
import gc, os, signal, time
from prefill_router import cli

def main(argv):
    fired = []
    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            if {unregister}:  # out of gc.callbacks: cli cannot tell it is in one, Python drops what it raises
                gc.callbacks.remove(callback)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    gc.callbacks.append(callback)
    gc.collect()
    time.sleep(5.0)
    print("ran to the end")

cli.run(main)
"""


@pytest.mark.parametrize("unregister", [False, True])
def test_ctrl_c_inside_a_gc_callback_stops_the_run(unregister):
    """JAX's _xla_gc_callback runs at every collection. Ctrl-C landing in a registered gc callback is held until
    the callback returns (no 'Exception ignored' traceback); one that Python swallowed (a callback cli cannot
    recognise) is delivered again. Either way the run stops with the resume hint."""
    proc = subprocess.run([sys.executable, "-c", _CTRL_C_IN_A_GC_CALLBACK.format(unregister=unregister)], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "ran to the end" not in proc.stdout
    assert ("Exception ignored" in proc.stderr) == unregister, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"


def test_runlocal_never_overrides_explicit_args():
    """4: runlocal only changes defaults."""
    c = llmrouter_pool.get_config("runlocal,max_train=50,encoders=smollm2_135m")
    assert c.data.max_train == 50 and c.encoders == ("smollm2_135m",) and c.data.max_test == 100
    c = llmrouter_pool.get_config("runlocal")
    assert c.data.max_train == 300 and c.encoders == ("tiny_llama",)
    from configs import default, evaluate
    assert default.get_config("runlocal,items=20").data.num_items == 20
    assert default.get_config("runlocal,encoders=tiny_lama").encoders == ("tiny_lama",)  # then refused by name
    runlocal_items = default.get_config("runlocal").data.num_items
    assert evaluate.get_config("checkpoint=d,runlocal,seed=3").data.num_items == runlocal_items
    a = common.parse_arg("items=20,runlocal", {"items": 48}, items=400, runlocal=False)
    assert a.items == 20
    assert common.parse_arg("runlocal", {"items": 48}, items=400, runlocal=False).items == 48
    assert common.parse_arg("", {"items": 48}, items=400, runlocal=False).items == 400


@pytest.fixture(scope="module")
def saved_router(tmp_path_factory):
    """A small router checkpoint (one shared block over tiny_llama's layer 1; random trunk weights)."""
    import jax
    import numpy as np
    from prefill_router import router
    from prefill_router.router import model
    spec = router.SharedBlockSpec((router.FeatureSource("tiny_llama", 1, "mean"),), 3)
    transforms, _ = router.build_design({("tiny_llama", 1, "mean"): np.random.default_rng(0).normal(size=(12, 5))},
                                        [spec], np.arange(12))
    cfg = model.TrunkConfig(d_in=3, n_targets=2, hidden=(4,), dropout=(0.0,))
    params = jax.tree.map(lambda x: np.asarray(x)[None], model.init_params(cfg, jax.random.PRNGKey(1))[1])
    bundle = router.RouterBundle(("a", "b"), [spec], transforms, router.Ensemble(cfg, params, (0,), np.zeros(1)),
                                 prices={"a": (1.0, 1.0), "b": (2.0, 2.0)}, encoders={"tiny_llama": {}})
    return router.save_router(tmp_path_factory.mktemp("ckpt") / "router", bundle)


@pytest.mark.parametrize("prompt", ["", "   "])
def test_route_refuses_an_empty_prompt(prompt, saved_router):
    proc = _run("-m", "experiments.route", f"--checkpoint={saved_router}", "--prompt", "fine", "--prompt", prompt)
    _one_line_error(proc, "--prompt number 2 is empty or whitespace")


@pytest.mark.parametrize("victim", ["router.json", "arrays"])
def test_route_refuses_a_damaged_checkpoint(victim, saved_router, tmp_path):
    """10 and 3: a truncated router.json or a flipped array file names the file and says to re-save the router."""
    import shutil
    copy = pathlib.Path(shutil.copytree(saved_router, tmp_path / "router"))
    if victim == "router.json":
        path = copy / "router.json"
        path.write_bytes(path.read_bytes()[:100])
    else:
        path = max((p for p in (copy / "arrays").rglob("*") if p.is_file() and p.parent.name == "d"),
                   key=lambda p: p.stat().st_size)
        data = bytearray(path.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 64])
        path.write_bytes(bytes(data))
    proc = _run("-m", "experiments.route", f"--checkpoint={copy}", "--prompt", "What is 3 + 4?")
    _one_line_error(proc, str(path), "corrupt or truncated", "re-save the router")
    assert "route →" not in proc.stdout


def test_check_config_cross_attention_fields():
    from configs import default
    from prefill_router import validation
    validation.check_config(default.get_config("runlocal"))
    for field, value, match in [("router.kind", "mlp", "router.kind='mlp'"),
                                ("cross_attention.queries", ("prefill", "tokens"), "cross_attention.queries"),
                                ("routing.reward_forms", (), "routing.reward_forms"),
                                ("routing.n_lambdas", 1, "routing.n_lambdas=1 must be >= 2"),
                                ("cross_attention.dropout", 1.0, "must be >= 0 and < 1")]:
        c = default.get_config("runlocal")
        section, name = field.split(".")
        c[section][name] = value
        with pytest.raises(ValueError, match=match):
            validation.check_config(c)


def _own_data(tmp_path):
    """40 questions x 3 models in the long format WITHOUT a cost column; 'always' answers everything right."""
    import numpy as np
    rng = np.random.default_rng(0)
    lines = ["question,model,is_correct,output_tokens,task"]
    for i in range(40):
        task = ("arith", "words")[i % 2]
        q = f"Question {i} about {task}: what is {i} plus {2 * i}?"
        for model, p in (("weak", 0.4), ("strong", 0.8), ("always", 1.0)):
            lines.append(f'"{q}",{model},{int(rng.random() < p)},{10 + i},{task}')
    data = tmp_path / "labels.csv"
    data.write_text("\n".join(lines) + "\n")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"weak": [0.1, 0.2], "strong": [3.0, 6.0], "always": [1.0, 1.0]}))
    return data, prices


def test_own_data_with_prices_file_and_drop_targets(tmp_path):
    """8: data.prices from the CLI gets a cost-less file past the data stage; 7: a single-class target stops the
    run right after the data stage naming data.drop_targets, which then removes it and the run completes."""
    data, prices = _own_data(tmp_path)
    cache = tmp_path / "cache"
    base = ["-m", "experiments.main", "--config=configs/default.py:runlocal,source=long", f"--config.data.path={data}",
            f"--config.data.prices={prices}", "--config.eval.n_boot=20"]
    proc = _run(*base, f"--workdir={tmp_path / 'w1'}", cache=cache, timeout=300)
    _one_line_error(proc, "targets ['always'] have a single label class", "--config.data.drop_targets=\"('always',)\"")
    assert "stage features" not in proc.stderr
    proc = _run(*base, "--config.data.drop_targets=('always',)", f"--workdir={tmp_path / 'w2'}", cache=cache,
                timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    router = json.loads((tmp_path / "w2" / "router" / "router.json").read_text())
    assert router["targets"] == ["weak", "strong"]
    assert router["prices"] == {"weak": [0.1, 0.2], "strong": [3.0, 6.0]}
    assert router["train_split"]["n_train"] == json.loads((tmp_path / "w2" / "metrics.json").read_text())[
        "data"]["train"]["num_rows"]


def test_too_few_rows_for_a_split_stop_after_the_data_stage(tmp_path):
    lines = ["question,model,is_correct,output_tokens"] + [f"q{i},{m},{(i + j) % 2},5" for i in range(6)
                                                          for j, m in enumerate(("a", "b"))]
    (tmp_path / "tiny.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "prices.json").write_text('{"a": [1, 1], "b": [2, 2]}')
    proc = _run("-m", "experiments.main", "--config=configs/default.py:runlocal,source=long",
                f"--config.data.path={tmp_path / 'tiny.csv'}", f"--config.data.prices={tmp_path / 'prices.json'}",
                f"--workdir={tmp_path / 'w'}", cache=tmp_path / "cache")
    _one_line_error(proc, "the split has 4 train / 2 test rows; the pipeline needs >= 10 train", "data.test_fraction")
    assert "stage features" not in proc.stderr
