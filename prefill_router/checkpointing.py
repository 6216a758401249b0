"""Orbax wrappers: pure-dict array trees on disk, resumable training-state checkpoints, file checksums.

This is the only module importing orbax, and it knows nothing about routers (``router.checkpoint``
builds the router bundle format on top of it). Conventions (style.md §8): absolute paths; every save
waits for the async write to finish; trees reach orbax as pure nested dicts of numpy arrays keyed by
the tree's own path names (``to_pure_dict``: dict keys, attribute names, sequence indices as strings),
so NNX/optax container types never reach orbax and a restore rebuilds them from a ``like`` tree. Arrays
are stored and restored as numpy (float64 stays float64 without jax_enable_x64). Every checkpoint is
read and written by the calling process alone, without barriers across JAX processes: in a multi-process
run only process 0 trains and saves, so orbax's default all-process barriers would wait forever for
processes that stopped after the features stage (and orbax refuses host-local jax.Arrays there).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp


def _abs(directory: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(directory).expanduser().resolve()


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    raise TypeError(f"unsupported pytree key {key!r}")


def to_pure_dict(tree: Any) -> dict:
    """Pytree -> nested dict {path name: ... leaf as numpy}; e.g. an optax (ScaleByAdamState(mu=...),)
    becomes {"0": {"mu": ...}}. Containers without leaves vanish (``from_pure_dict`` restores them)."""
    out: dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not path:
            raise ValueError("a bare array is not a tree; wrap it in a dict")
        node = out
        for key in path[:-1]:
            node = node.setdefault(_key_name(key), {})
        node[_key_name(path[-1])] = np.asarray(leaf)
    return out


def from_pure_dict(like: Any, pure: Mapping[str, Any], what: str) -> Any:
    """Inverse of ``to_pure_dict`` onto the structure of ``like``; ValueError naming missing/extra paths."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(like)
    leaves, missing, expected = [], [], set()
    for path, _ in pairs:
        node = pure
        for key in path:
            node = node.get(_key_name(key)) if isinstance(node, Mapping) else None
        name = "/".join(_key_name(k) for k in path)
        expected.add(name)
        if node is None:
            missing.append(name)
        leaves.append(node)
    extra = sorted(p for p in _leaf_paths(pure) if p not in expected)
    if missing or extra:
        raise ValueError(f"{what}: the stored tree does not match the expected structure (missing {missing[:5]}, "
                         f"unexpected {extra[:5]}); it was written by a different configuration")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _leaf_paths(pure: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in pure.items():
        out += _leaf_paths(v, f"{prefix}{k}/") if isinstance(v, Mapping) else [f"{prefix}{k}"]
    return out


def _this_process_only() -> ocp.options.MultiprocessingOptions:
    """Orbax options for a checkpoint that this process reads or writes alone (see the module docstring)."""
    pid = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=pid, active_processes={pid})


def _target(pure: Mapping[str, Any]) -> dict:
    """Restore target: the nested dict with empty numpy arrays of the leaves' shapes and dtypes."""
    return {k: _target(v) if isinstance(v, Mapping) else np.empty(tuple(v.shape), np.dtype(v.dtype))
            for k, v in pure.items()}


def save_tree(directory: str | os.PathLike, tree: Mapping[str, Any]) -> None:
    """Write a tree of arrays with orbax as numpy, in its ``to_pure_dict`` form (string keys)."""
    ckptr = ocp.StandardCheckpointer(multiprocessing_options=_this_process_only())
    ckptr.save(_abs(directory), to_pure_dict(tree))
    ckptr.wait_until_finished()
    ckptr.close()


def restore_tree(directory: str | os.PathLike, like: Any = None) -> dict:
    """Read a tree written by ``save_tree`` as a pure dict of numpy arrays with the stored shapes and dtypes;
    when ``like`` (any pytree) is given, a stored tree of another structure raises ValueError naming the
    differing paths (``from_pure_dict(like, out)`` then rebuilds like's container types)."""
    path = _abs(directory)
    ckptr = ocp.StandardCheckpointer(multiprocessing_options=_this_process_only())
    try:
        stored = ckptr.metadata(path).item_metadata.tree
        if like is not None:
            from_pure_dict(like, stored, f"arrays in {path}")
        out = ckptr.restore(path, _target(stored))
    finally:
        ckptr.close()
    return jax.tree.map(np.asarray, out)


def file_digests(directory: str | os.PathLike) -> dict[str, str]:
    """{path relative to ``directory``: sha256 hex} of every file below it, sorted by path."""
    root = _abs(directory)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[path.relative_to(root).as_posix()] = h.hexdigest()
    return out


def changed_files(directory: str | os.PathLike, expected: Mapping[str, str]) -> list[str]:
    """Files of ``expected`` that are missing under ``directory`` or whose sha256 differs (sorted)."""
    actual = file_digests(directory)
    return sorted(name for name, digest in expected.items() if actual.get(name) != digest)


class TrainStateCheckpointer:
    """Periodic checkpoints of a training-state pytree with JSON metadata (orbax CheckpointManager).

    ``save(step, tree, metadata)`` always writes (force=True) and waits; ``restore(like, step=None)``
    returns (tree, metadata) for the latest (or given) step, with ``like``'s structure, on the default device.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = _abs(directory)
        self.directory.mkdir(parents=True, exist_ok=True)  # orbax refuses create=True with active_processes
        alone = _this_process_only()
        self._mngr = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=False, multiprocessing_options=alone),
            item_handlers={"state": ocp.StandardCheckpointHandler(multiprocessing_options=alone),
                           "meta": ocp.JsonCheckpointHandler(multiprocessing_options=alone)})

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, step: int, tree: Any, metadata: Mapping[str, Any]) -> None:
        self._mngr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(to_pure_dict(tree)),
                                                           meta=ocp.args.JsonSave(dict(metadata))), force=True)
        self._mngr.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        what = f"checkpoint {self.directory} step {step} (delete the directory to start afresh)"
        from_pure_dict(like, self._mngr.item_metadata(step)["state"].tree, what)
        out = self._mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_target(to_pure_dict(like))), meta=ocp.args.JsonRestore()))
        tree = from_pure_dict(like, out["state"], what)
        return jax.tree.map(jax.numpy.asarray, tree), dict(out["meta"])

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


__all__ = ["TrainStateCheckpointer", "to_pure_dict", "from_pure_dict", "save_tree", "restore_tree",
           "file_digests", "changed_files"]
