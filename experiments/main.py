"""Entry point: ``python -m experiments.main --config=configs/<name>.py[:args] --workdir=DIR``.

Dispatches on ``config.experiment`` through the explicit ``EXPERIMENTS`` registry. Each experiment
module exposes ``run(config, workdir) -> dict`` and writes its artifacts under ``workdir``:
``config.json``, ``metrics.json`` (last, only when the run completes), ``report.md``, ``plots/`` and checkpoints.

A workdir holds ONE run: rerunning the same command resumes it; a different config in a workdir that
holds another run's ``config.json`` stops at once, naming the changed fields; ``--overwrite`` then
deletes that run's outputs (``cli.RUN_OUTPUTS``) and starts afresh. The config is checked
(`prefill_router.validation`) before any stage runs. Errors print one line (``--verbose``: traceback).
"""
import importlib
import logging as std_logging
import pathlib
import tempfile
import time

from absl import flags, logging
from ml_collections import config_flags

from prefill_router import cli

# experiment name -> module exposing run(config, workdir)
EXPERIMENTS = {
    "pipeline": "experiments.pipeline",
    "evaluate": "experiments.evaluate",
    "transfer": "experiments.transfer",
    "layer_sweep": "experiments.layer_sweep",
    "add_target": "experiments.add_target",
    "label_efficiency": "experiments.label_efficiency",
}

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an ml_collections config file, optionally with ':args'.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for all outputs of the run.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete the outputs of a run with another config in --workdir "
                               "and start afresh (without it such a workdir is refused).")
flags.mark_flags_as_required(["config", "workdir"])

UsageError = cli.UsageError


def prepare_workdir(workdir: str) -> pathlib.Path:
    """Creates ``workdir`` and checks that it is writable; returns its absolute path."""
    path = pathlib.Path(workdir).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test."):  # unique: hosts may share the workdir
            pass
    except OSError as e:
        raise UsageError(f"--workdir={workdir} cannot be written ({e.strerror}); choose another directory")
    return path


def resolve_experiment(config):
    """The experiment module named by ``config.experiment``; UsageError if unknown or missing."""
    name = config.get("experiment")
    if not name:
        raise UsageError("the config has no 'experiment' field; set it to one of: "
                         + ", ".join(sorted(EXPERIMENTS)))
    if name not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    return importlib.import_module(EXPERIMENTS[name])


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    import jax  # imported here so that --help stays fast

    from prefill_router import fileio, paths, validation
    from prefill_router.features import distributed

    jax.config.config_with_absl()
    distributed.maybe_initialize()  # multi-host runs: settings from the environment (see launch/)
    config = load_config()
    paths.enable_compile_cache(config.get("cache_dir") or None, enabled=config.get("compile_cache", True))
    module = resolve_experiment(config)
    validation.check_config(config)
    workdir = prepare_workdir(_WORKDIR.value)
    if jax.process_index() == 0:
        cli.check_workdir_config(workdir, config.to_dict(), _OVERWRITE.value)
    logging.info("JAX %s on %d %s device(s), process %d of %d: %s", jax.__version__, jax.device_count(),
                 jax.default_backend(), jax.process_index(), jax.process_count(), jax.devices())
    logging.info("Config:\n%s", config)
    fileio.atomic_write_json(workdir / "config.json", config.to_dict(), indent=2, sort_keys=True, default=str)
    start = time.time()
    module.run(config, workdir)
    logging.info("Experiment %r finished in %.1f s; outputs in %s", config.experiment,
                 time.time() - start, workdir)
    distributed.wait_for_all("experiments.main.done")  # processes that finished early wait for the others


USAGE = ("usage: python -m experiments.main --config=configs/<name>.py[:args] --workdir=DIR "
         "[--config.<field>=<value> ...]")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that reports a bad flag, config arg or override in one line."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise UsageError(f"{cli.one_line(e)} ({USAGE})") from None


def load_config():
    """The parsed config; a config file that failed to load raises only here, on access."""
    try:
        config = _CONFIG.value
        config.get("experiment")  # a placeholder for a failed load raises its IOError on first use
        return config
    except OSError as e:
        raise UsageError(f"cannot load the config: {cli.one_line(e)}") from None


class _QuietLibraries(std_logging.Filter):
    """Drops INFO records from orbax (hundreds of lines per checkpoint) and JAX's backend probing."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or not any(
            part in record.pathname for part in ("/orbax/", "/jax/_src/"))


def run_cli():
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    cli.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run_cli()
