"""Where the project reads data and caches downloads.

Both locations are configurable so that nothing large ever lands in the repository:
    * data:  ``$PREFILL_ROUTER_DATA``, else ``<repo>/../shared/data`` (the layout of a checkout
        with the shared folder beside it).
    * cache: ``$PREFILL_ROUTER_CACHE``, else ``$XDG_CACHE_HOME/prefill_router`` (``~/.cache/prefill_router``).

`enable_compile_cache` puts JAX's persistent compilation cache in ``<cache>/jax_compile``
(``PREFILL_ROUTER_COMPILE_CACHE``: 0 = off, or another directory).
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


COMPILE_CACHE_ENV = "PREFILL_ROUTER_COMPILE_CACHE"


def enable_compile_cache(override: str | os.PathLike | None = None, *, enabled: bool = True,
                         min_compile_time_s: float = 0.0) -> pathlib.Path | None:
    """Turns on JAX's persistent compilation cache in ``<cache_dir(override)>/jax_compile``; returns the
    directory, or None when disabled: by ``enabled=False`` (e.g. a config's ``compile_cache``) or by
    ``PREFILL_ROUTER_COMPILE_CACHE`` = 0/false/off; that variable = a path puts the cache there. Call before
    the first compile.

    XLA executables are stored keyed by the lowered program, devices, compile options and the jax/jaxlib
    versions, so a later process with the same programs and shapes loads them instead of compiling (tracing
    and lowering still run). Programs compiling in under `min_compile_time_s` are not stored."""
    import jax
    env = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    if not enabled or env.lower() in ("0", "false", "off", "no"):
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = (pathlib.Path(env).expanduser() if env and env.lower() not in ("1", "true", "on", "yes")
            else cache_dir(override) / "jax_compile").resolve()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def require_data_file(relpath: str, override: str | os.PathLike | None = None) -> pathlib.Path:
    """Path of a file under the data dir; raises FileNotFoundError that says how to point at it."""
    path = data_dir(override) / relpath
    if not path.exists():
        raise FileNotFoundError(
                f"{path} does not exist. Point the data directory at a copy of shared/data with "
                f"--config.data_dir=DIR or PREFILL_ROUTER_DATA=DIR.")
    return path
