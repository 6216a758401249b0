"""Command-line error handling shared by the entry points (experiments.main, experiments.route, launch.sweep).

``run(main)`` runs an absl main so that a problem the user must fix prints ONE line and exits 2:
``UsageError`` and every ``ValueError`` / ``FileNotFoundError`` / ``FileExistsError`` raised by the library
(their messages name the problem and the fix). ``--verbose`` prints the traceback as well. Ctrl-C prints
"interrupted; rerun the same command to resume" and exits 130 (every long stage resumes from its cache).
Other exceptions are bugs and keep their traceback.
"""
import re
import sys
import traceback

from absl import app, flags

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


def run(main, **kwargs) -> None:
    """``absl.app.run(main, **kwargs)`` with the one-line error handling of the module docstring."""
    try:
        app.run(main, **kwargs)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except (UsageError, *USER_ERRORS) as e:
        report(e)
