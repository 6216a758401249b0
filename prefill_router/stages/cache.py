"""Content-addressed cache of stage products that are pure functions of their inputs (probe table, baselines).

A product is stored under ``<cache_dir>/stage_products/<namespace>/<key>.<ext>``, where ``key`` is the
SHA-256 of exactly what it is computed from (`content_key`: arrays by dtype, shape and bytes; config subtrees,
names and indices by value) together with `code_version()`: a digest of every ``prefill_router`` source
file and the numerical libraries' versions, so that editing the code (or upgrading jax/numpy) misses instead
of returning a stale product. Writes are atomic (`fileio.atomic_writer`); an unreadable entry is recomputed
and overwritten. A hit returns the stored product bit for bit (JSON floats round-trip exactly; arrays as
``.npz``), so a run with a warm cache writes the same metrics as one with a cold cache.

``PREFILL_ROUTER_STAGE_CACHE`` = 0/false/off turns it off (every product recomputed, nothing written).

    key = content_key("probe_table", config_dict, labels, mask)
    text = cached_text("probes", key, compute_text, cache_dir)          -> str
    arrays = cached_arrays("baselines", key, compute_arrays, cache_dir)  -> {name: ndarray}
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pathlib
from typing import Any, Callable

import numpy as np
from absl import logging

from prefill_router import fileio, paths

STAGE_CACHE_ENV = "PREFILL_ROUTER_STAGE_CACHE"
_PACKAGE = pathlib.Path(__file__).resolve().parent.parent  # prefill_router/


def enabled() -> bool:
    """False when ``PREFILL_ROUTER_STAGE_CACHE`` is 0/false/off/no."""
    return os.environ.get(STAGE_CACHE_ENV, "").strip().lower() not in ("0", "false", "off", "no")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """SHA-256 over every ``prefill_router/**/*.py`` (relative path and bytes, sorted) and the versions of
    jax, jaxlib, numpy, scipy, flax and optax: any edit of the library's code invalidates every product."""
    import flax
    import jax
    import jaxlib
    import optax
    import scipy

    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(_PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    for mod in (jax, jaxlib, np, scipy, flax, optax):
        h.update(f"{mod.__name__}={mod.__version__};".encode())
    return h.hexdigest()


def _update(h, obj: Any) -> None:
    """Feeds ``obj`` into hash ``h`` with a type tag and length before each value, so that different
    structures never produce the same byte stream."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):  # ml_collections.ConfigDict, ProbeConfig, ...
        obj = obj.to_dict()
    if isinstance(obj, dict):
        h.update(b"D%d;" % len(obj))
        for k in sorted(obj, key=str):
            _update(h, str(k))
            _update(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d;" % len(obj))
        for v in obj:
            _update(h, v)
    elif isinstance(obj, str):
        b = obj.encode()
        h.update(b"S%d;" % len(b) + b)
    elif isinstance(obj, bytes):
        h.update(b"B%d;" % len(obj) + obj)
    elif obj is None or isinstance(obj, (bool, int, float)):
        h.update(b"J" + repr(obj).encode() + b";")  # repr(float) round-trips exactly; bool before int
    elif isinstance(obj, np.generic) or hasattr(obj, "__array__"):
        a = np.ascontiguousarray(np.asarray(obj))
        if a.dtype == object:
            raise TypeError("content_key cannot hash object arrays; pass lists of str/numbers instead")
        h.update(f"A{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    else:
        raise TypeError(f"content_key cannot hash {type(obj).__name__}; pass arrays, dicts, lists or scalars")


def content_key(*parts: Any) -> str:
    """Hex SHA-256 of ``parts`` (arrays, dicts, lists, str, numbers, None, objects with ``to_dict``) and
    `code_version()`."""
    h = hashlib.sha256()
    _update(h, [code_version(), *parts])
    return h.hexdigest()


def _path(namespace: str, key: str, ext: str, cache_dir) -> pathlib.Path:
    return paths.cache_dir(cache_dir) / "stage_products" / namespace / f"{key}.{ext}"


def cached_text(namespace: str, key: str, compute: Callable[[], str], cache_dir=None) -> str:
    """The stored text of ``key``, else ``compute()`` (stored atomically). Off switch: module docstring."""
    if not enabled():
        return compute()
    path = _path(namespace, key, "json", cache_dir)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
            json.loads(text)  # a truncated / foreign file is recomputed
            logging.info("%s: cached product %s", namespace, key[:12])
            return text
        except (OSError, ValueError):
            pass
    text = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_text(path, text)
    return text


def cached_arrays(namespace: str, key: str, compute: Callable[[], dict], cache_dir=None) -> dict:
    """The stored {name: ndarray} of ``key`` (names and order, dtypes and bytes as computed), else ``compute()``
    (stored atomically as .npz). Off switch: module docstring."""
    if not enabled():
        return compute()
    path = _path(namespace, key, "npz", cache_dir)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                names = [str(n) for n in z["names"]]
                out = {name: z[f"a{i}"] for i, name in enumerate(names)}
            logging.info("%s: cached product %s", namespace, key[:12])
            return out
        except (OSError, ValueError, KeyError):
            pass
    out = {name: np.asarray(v) for name, v in compute().items()}
    buf = io.BytesIO()
    np.savez(buf, names=np.array(list(out), dtype=str), **{f"a{i}": v for i, v in enumerate(out.values())})
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_bytes(path, buf.getvalue())
    return out
