"""Orbax wrappers: resumable training-state checkpoints and self-contained router checkpoints.

This is the only module importing orbax. Conventions (style.md §8): absolute paths; every save waits for
the async write to finish; pytrees are stored as flat dicts ``{"leaf_00000": array, ...}`` with the
tree paths kept in JSON metadata (so NNX/optax container types never reach orbax and a restore checks
the structure). Arrays are stored and restored as numpy (so float64 transforms stay float64 without
jax_enable_x64); restored training states are put on the default device. Every checkpoint is read and
written by the calling process alone, without barriers across JAX processes: in a multi-process run only
process 0 trains and saves (experiments/pipeline.py), so orbax's default all-process barriers would wait
forever for processes that stopped after the features stage (and orbax refuses host-local jax.Arrays there).

Router checkpoint layout (``save_router(directory, bundle)``), written into ``<dir>.tmp-<pid>`` and
moved into place with ``os.replace`` (atomic):
    <dir>/router.json   format version, package version, targets, prices, costs, block specs, encoder specs,
                        trunk + train config, ensemble seeds/val losses, array index (path, shape, dtype)
    <dir>/arrays/       orbax StandardCheckpointer tree: transforms + ensemble parameters
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any, Mapping, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from prefill_router import fileio

FORMAT_VERSION = 1
_ROUTER_JSON = "router.json"
_ROUTER_ARRAYS = "arrays"


def _abs(directory: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(directory).expanduser().resolve()


def flatten_tree(tree: Any) -> tuple[dict[str, np.ndarray | jax.Array], list[str]]:
    """Pytree -> ({"leaf_00000": leaf, ...}, [jax.tree_util.keystr(path), ...]) in flatten order."""
    pairs, _ = jax.tree_util.tree_flatten_with_path(tree)
    flat = {f"leaf_{i:05d}": leaf for i, (_, leaf) in enumerate(pairs)}
    return flat, [jax.tree_util.keystr(path) for path, _ in pairs]


def unflatten_like(like: Any, flat: Mapping[str, Any], paths: Sequence[str], what: str) -> Any:
    """Inverse of ``flatten_tree`` onto the structure of ``like``; raises if the tree paths differ."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(like)
    expected = [jax.tree_util.keystr(p) for p, _ in pairs]
    if list(paths) != expected:
        missing = sorted(set(expected) - set(paths))[:5]
        extra = sorted(set(paths) - set(expected))[:5]
        raise ValueError(f"{what}: checkpoint tree does not match the expected structure "
                         f"(missing {missing}, unexpected {extra}); it was written by a different configuration")
    return jax.tree_util.tree_unflatten(treedef, [flat[f"leaf_{i:05d}"] for i in range(len(expected))])


def _this_process_only() -> ocp.options.MultiprocessingOptions:
    """Orbax options for a checkpoint that this process reads or writes alone (see the module docstring)."""
    pid = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=pid, active_processes={pid})


class TrainStateCheckpointer:
    """Periodic checkpoints of a training-state pytree with JSON metadata (orbax CheckpointManager).

    ``save(step, tree, metadata)`` always writes (force=True) and waits; ``restore(like, step=None)``
    returns (tree, metadata) for the latest (or given) step, with ``like``'s structure.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = _abs(directory)
        self.directory.mkdir(parents=True, exist_ok=True)  # orbax refuses create=True with active_processes
        self._mngr = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=False, multiprocessing_options=_this_process_only()))

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, step: int, tree: Any, metadata: Mapping[str, Any]) -> None:
        flat, paths = flatten_tree(tree)
        flat = {k: np.asarray(v) for k, v in flat.items()}
        meta = {**metadata, "tree_paths": paths}
        self._mngr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(flat),
                                                           meta=ocp.args.JsonSave(meta)), force=True)
        self._mngr.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        flat_like, _ = flatten_tree(like)
        flat_like = {k: np.asarray(v) for k, v in flat_like.items()}
        out = self._mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(flat_like),
                                                               meta=ocp.args.JsonRestore()))
        meta = dict(out["meta"])
        tree = unflatten_like(like, out["state"], meta.pop("tree_paths"), f"checkpoint {self.directory}")
        return jax.tree.map(jax.numpy.asarray, tree), meta

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


def save_arrays(directory: str | os.PathLike, tree: Mapping[str, Any]) -> dict[str, Any]:
    """Write a pytree of arrays with orbax as numpy (float64 stays float64); returns its JSON index
    {paths, shapes, dtypes}."""
    flat, paths = flatten_tree(tree)
    flat = {k: np.asarray(v) for k, v in flat.items()}
    ckptr = ocp.StandardCheckpointer(multiprocessing_options=_this_process_only())
    ckptr.save(_abs(directory), flat)
    ckptr.wait_until_finished()
    ckptr.close()
    return {"paths": paths, "shapes": [list(np.shape(v)) for v in flat.values()],
            "dtypes": [str(v.dtype) for v in flat.values()]}


def load_arrays(directory: str | os.PathLike, index: Mapping[str, Any]) -> list[np.ndarray]:
    """Read the arrays written by ``save_arrays`` (as numpy, in flatten order) using the JSON index."""
    target = {f"leaf_{i:05d}": np.empty(tuple(shape), np.dtype(dtype))
              for i, (shape, dtype) in enumerate(zip(index["shapes"], index["dtypes"]))}
    ckptr = ocp.StandardCheckpointer(multiprocessing_options=_this_process_only())
    out = ckptr.restore(_abs(directory), target)
    ckptr.close()
    return [np.asarray(out[f"leaf_{i:05d}"]) for i in range(len(target))]


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    """``obj`` as JSON with sorted keys (the router.json format), written by `fileio.atomic_write_json`."""
    fileio.atomic_write_json(path, obj, indent=1, sort_keys=True)


# ---------------------------------------------------------------------------------------------------------
# Router checkpoints
# ---------------------------------------------------------------------------------------------------------
def save_router(directory: str | os.PathLike, bundle: "RouterBundle", *, overwrite: bool = False) -> pathlib.Path:
    """Write a self-contained router checkpoint (see module docstring); returns its absolute path."""
    from prefill_router.router.ensemble import bundle_to_json_and_arrays  # local: router imports this module

    final = _abs(directory)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass overwrite=True or choose another directory")
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta, arrays = bundle_to_json_and_arrays(bundle)
    meta["array_index"] = save_arrays(tmp / _ROUTER_ARRAYS, arrays)
    meta["format_version"] = FORMAT_VERSION
    write_json_atomic(tmp / _ROUTER_JSON, meta)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    logging.info("saved router checkpoint to %s", final)
    return final


def load_router(directory: str | os.PathLike) -> "RouterBundle":
    """Read a router checkpoint written by ``save_router``; needs no training data."""
    from prefill_router.router.ensemble import bundle_from_json_and_arrays

    path = _abs(directory)
    meta_path = path / _ROUTER_JSON
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {path} is not a router checkpoint")
    meta = json.loads(meta_path.read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"router checkpoint {path} has format version {version}; this code reads version "
                         f"{FORMAT_VERSION}; re-export it with the matching prefill_router release")
    leaves = load_arrays(path / _ROUTER_ARRAYS, meta["array_index"])
    return bundle_from_json_and_arrays(meta, leaves)


__all__ = ["FORMAT_VERSION", "TrainStateCheckpointer", "save_arrays", "load_arrays", "save_router",
           "load_router", "flatten_tree", "unflatten_like"]
