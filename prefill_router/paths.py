"""Where the project reads data and caches downloads.

Both locations are configurable so that nothing large ever lands in the repository:
    * data:  ``$PREFILL_ROUTER_DATA``, else ``<repo>/../shared/data`` (the layout of a checkout
        with the shared folder beside it).
    * cache: ``$PREFILL_ROUTER_CACHE``, else ``$XDG_CACHE_HOME/prefill_router`` (``~/.cache/prefill_router``).
"""
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def data_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    """The shared data directory (routing labels, benchmarks); not checked for existence."""
    if override:
        return pathlib.Path(override).expanduser().resolve()
    env = os.environ.get("PREFILL_ROUTER_DATA")
    if env:
        return pathlib.Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def cache_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    """The download/feature cache directory, created on first use."""
    if override:
        path = pathlib.Path(override).expanduser()
    elif os.environ.get("PREFILL_ROUTER_CACHE"):
        path = pathlib.Path(os.environ["PREFILL_ROUTER_CACHE"]).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = pathlib.Path(base) / "prefill_router"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_data_file(relpath: str, override: str | os.PathLike | None = None) -> pathlib.Path:
    """Path of a file under the data dir; raises FileNotFoundError that says how to point at it."""
    path = data_dir(override) / relpath
    if not path.exists():
        raise FileNotFoundError(
                f"{path} does not exist. Point the data directory at a copy of shared/data with "
                f"--config.data_dir=DIR or PREFILL_ROUTER_DATA=DIR.")
    return path
