"""Command-line error handling shared by the entry points (experiments.main, experiments.route, launch.sweep),
and the one-run-per-workdir rule (``check_workdir_config``).

``run(main)`` runs an absl main so that a problem the user must fix prints ONE line and exits 2:
``UsageError`` and every ``ValueError`` / ``FileNotFoundError`` / ``FileExistsError`` raised by the library
(their messages name the problem and the fix). ``--verbose`` prints the traceback as well. Ctrl-C prints
"interrupted; rerun the same command to resume" and exits 130 (every long stage resumes from its cache; an
interrupt that Python swallowed in a gc callback is delivered again, ``_on_sigint``).
Other exceptions are bugs and keep their traceback.
"""
import gc
import json
import os
import pathlib
import re
import shutil
import signal
import sys
import threading
import traceback

from absl import app, flags, logging

_VERBOSE = flags.DEFINE_bool("verbose", False, "On an error, print the full traceback, not just one line.")

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
INTERRUPTED = "interrupted; rerun the same command to resume"


class UsageError(Exception):
    """A problem with the command line or config that the user must fix; printed as one line."""


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (KeyError's quoting, wrapped tracebacks and ml_collections' 'Did you
    mean' unwrapped)."""
    while e.args and isinstance(e.args[0], BaseException):  # AttributeError(KeyError(...)) from ml_collections
        e = e.args[0]
    text = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        lines = lines[-1:]  # a wrapped traceback (ml_collections' config loading): its last line is the error
    field = re.fullmatch(r"""['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?""", lines[0])
    if field and isinstance(e, (KeyError, AttributeError)):
        hint = "; " + " ".join(lines[1:]).replace("Did you", "did you") if len(lines) > 1 else ""
        return f"unknown config field {field.group(1)!r} in a --config.<field> override{hint}"
    return " ".join(lines)


def report(e: BaseException, code: int = 2) -> None:
    """Print ``error: <one line>`` (after the traceback with --verbose) and exit with ``code``."""
    if flags.FLAGS.is_parsed() and _VERBOSE.value:
        traceback.print_exception(e)
    print(f"error: {one_line(e)}", file=sys.stderr)
    sys.exit(code)


# What experiments write into a workdir; --overwrite deletes these (and nothing else) before a changed run.
RUN_OUTPUTS = ("config.json", "metrics.json", "report.md", "data_stats.json", "data_stats.md", "leaderboard.json",
               "leaderboard.md", "leaderboard.png", "router", "train_state", "probes", "plots", "label_efficiency")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_workdir_config(workdir: pathlib.Path, config_dict: dict, overwrite: bool) -> None:
    """Refuses (UsageError) a workdir whose config.json differs from this run's config, unless ``overwrite``,
    which deletes that run's outputs first."""
    path = workdir / "config.json"
    if not path.is_file():
        return
    try:
        old = _flat(json.loads(path.read_text()))
    except (OSError, ValueError):
        old = {"<unreadable config.json>": True}
    new = _flat(json.loads(json.dumps(config_dict, default=str)))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if not changed:
        return
    if not overwrite:
        shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3])
        raise UsageError(f"--workdir={workdir} holds a run with another config ({shown}"
                         f"{f' and {len(changed) - 3} more' if len(changed) > 3 else ''}); "
                         "pass --overwrite to delete its outputs and start afresh, or choose a new --workdir")
    logging.warning("--overwrite: deleting the outputs of the previous run in %s (changed: %s)", workdir,
                    ", ".join(changed))
    for name in RUN_OUTPUTS:
        target = workdir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


_INTERRUPT_PENDING = threading.Event()


def _inside_finalizer(frame) -> bool:
    """True when ``frame`` runs inside a registered gc callback or a ``__del__``, where Python prints and drops
    an exception ("Exception ignored in ...") instead of raising it."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum, frame):
    """Ctrl-C: KeyboardInterrupt, delivered again every 0.2 s until ``run`` has caught it. Inside a gc callback
    or ``__del__`` (JAX's ``_xla_gc_callback`` runs at every collection) it is not raised but left to the next
    delivery: Python would print a traceback and drop it. Re-delivery also covers places this check cannot
    see (a weakref callback, a gc callback that unregistered itself)."""
    _INTERRUPT_PENDING.set()

    def again():
        if _INTERRUPT_PENDING.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.2, again)
    timer.daemon = True
    timer.start()
    if not _inside_finalizer(frame):
        raise KeyboardInterrupt


def run(main, **kwargs) -> None:
    """``absl.app.run(main, **kwargs)`` with the one-line error handling of the module docstring."""
    previous = None
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):  # not when SIGINT is ignored
        previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        app.run(main, **kwargs)
    except KeyboardInterrupt:
        _INTERRUPT_PENDING.clear()  # first: no re-delivery while the message is printed
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except (UsageError, *USER_ERRORS) as e:
        report(e)
    finally:
        if previous is not None:  # the handler lives only while run() runs
            signal.signal(signal.SIGINT, previous)
