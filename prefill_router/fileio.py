"""Atomic single-file writes: a reader sees the old file or the complete new one, never a partial one.

The data go to ``<path>.<pid>.tmp`` in the destination's directory (same filesystem, so the rename is
atomic), which is flushed, fsynced and moved over ``path`` with ``os.replace``. On any failure the temp
file is removed and the error propagates. The parent directory must exist.
"""
import contextlib
import json
import os
import pathlib
from typing import Any, BinaryIO, Callable, Iterator


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
