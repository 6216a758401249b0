"""Atomic single-file writes: a reader sees the old file or the complete new one, never a partial one.

The data go to ``<path>.<pid>.tmp`` in the destination's directory (same filesystem, so the rename is
atomic), which is flushed, fsynced and moved over ``path`` with ``os.replace``. On any failure the temp
file is removed and the error propagates. The parent directory must exist.

`write_json` is the library's JSON writer for artifacts (metrics.json, router.json, ...): numpy values
converted by `to_jsonable` (NaN/inf -> null), keys sorted, indent 1.
"""
import contextlib
import json
import os
import pathlib
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` when the block exits without an error."""
    path = pathlib.Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # gone after a successful replace; never mask the real error
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = False,
                      default: Callable[[Any], Any] | None = None) -> None:
    """``json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default)`` as UTF-8."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default))


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy arrays/scalars for JSON (dict keys -> str, tuples -> lists, NaN/inf -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``to_jsonable(obj)`` as JSON with sorted keys and indent 1, written atomically."""
    atomic_write_json(path, to_jsonable(obj), indent=1, sort_keys=True)
