"""Every config builds with its defaults and its runlocal arg; sweeps enumerate distinct runs."""
import importlib

import pytest

from configs import common

CONFIGS = ["default", "llmrouter_pool", "routellm_mmlu", "evaluate", "cross_attention"]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_config_builds(name, arg):
    config = importlib.import_module(f"configs.{name}").get_config(arg)
    assert config.experiment in ("pipeline", "evaluate")
    assert config.encoders and config.router.keep <= config.router.num_seeds


def test_parse_arg_types_and_unknown_keys():
    a = common.parse_arg("n=3,flag,xs=a+b,lr=0.5", n=1, flag=False, xs=(), lr=1.0)
    assert (a.n, a.flag, a.xs, a.lr) == (3, True, ("a", "b"), 0.5)
    with pytest.raises(ValueError, match="unknown config arg 'bogus'"):
        common.parse_arg("bogus=1", n=1)
    with pytest.raises(ValueError, match="boolean"):
        common.parse_arg("flag=maybe", flag=False)


@pytest.mark.parametrize("name", ["llmrouter_pool", "routellm_mmlu"])
def test_sweeps_enumerate_distinct_named_runs(name):
    from launch import sweep
    path, _, runs = sweep.load_sweep(f"configs/{name}.py")
    assert len(runs) >= 3 and len({r["name"] for r in runs}) == len(runs)
    assert all(sweep.command(path, "", r, path.parent)[3].startswith("--config=") for r in runs)


def test_layer_sweep_config_args():
    from configs import layer_sweep
    assert layer_sweep.get_config("base=default,stride=2").sweep.layer_stride == 2
    for bad in ("stride=x", "stride=0", "stride=1.5"):
        with pytest.raises(ValueError, match="stride=.*positive integer"):
            layer_sweep.get_config(bad)
    with pytest.raises(ValueError, match="base='nope'"):
        layer_sweep.get_config("base=nope")
