"""On-disk feature store addressed per prompt: resumable, atomic, checksummed, shared by every prompt list.

A *pool* holds the features of one extraction configuration (encoder identity incl. weights and chat
template, template kwargs, compute dtype, stored layers, poolings); any number of prompt lists draw rows
from it. A row is addressed by ``(sha256 of the rendered prompt, cap)``: ``cap`` is None when the prompt was
computed whole (then it serves every request whose max_length >= its token count) and ``max_length`` when
it was truncated (it serves only that max_length). So evaluation, routing, subsets, resumed and repeated
runs on overlapping data compute each prompt once.

Layout of ``<root>/<pool key>/``::

    meta.json                     # the pool's configuration (descriptive; rewritten if unreadable)
    shard_<id>.last.npy           # [L', C, D] float32, C-order: one layer of a shard is one contiguous slice
    shard_<id>.mean.npy
    shard_<id>.json               # sidecar, written LAST (commit marker): sha256 + shape of each file and,
                                  # per row, the prompt hash, untruncated token count and cap
    sets/<request key>.json       # one prompt list's (shard, row) per prompt; reopened by FeatureSet.open

Shards are immutable and uniquely named, so concurrent writers (hosts, processes) never touch each other's
files; a prompt stored twice is served from one copy. The index ``(hash, cap) -> (shard, row)`` is built by
reading the sidecars. A shard is used only when its sidecar parses and every file's shape, dtype and sha256
match it (hashes are cached per process by file size and mtime); otherwise it is logged, deleted and its
prompts recomputed. Every file is written atomically (`prefill_router.fileio`); an OSError (disk full,
unwritable directory) raises `StoreWriteError` naming the directory. ``*.tmp`` files and sidecar-less data
files left by killed writers are removed when a pool is opened (after a grace period, for live writers).

Axes: L' stored layers, C rows in a shard, N prompts, D model width.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import time
import uuid
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from absl import logging

from prefill_router import fileio

POOLINGS = ("last", "mean")
STORE_VERSION = 2
STORAGE_DTYPE = np.float32
ORPHAN_GRACE_S = 60.0        # a *.tmp of a dead pid (or a data file without sidecar) older than this is removed
ORPHAN_MAX_AGE_S = 3600.0    # ... and any *.tmp older than this (its pid may live on another host)
_TMP_RE = re.compile(r"\.(\d+)\.tmp$")


class StoreWriteError(OSError):
    """The store directory cannot be written (disk full, permissions); nothing half-written is left valid."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prompt_hash(rendered: str) -> str:
    """sha256 (hex) of one rendered prompt (chat template applied), the prompt part of a row's address."""
    return _sha256(rendered.encode("utf-8"))


def pool_key(*, encoder_identity: Any, template_kwargs: Mapping[str, Any] | None, layers: Sequence[int],
             dtype: str, poolings: Sequence[str] = POOLINGS) -> str:
    """sha256 (hex) of the extraction configuration whose rows one pool holds (no prompts, no max_length)."""
    header = {"version": STORE_VERSION, "encoder_identity": encoder_identity,
              "template_kwargs": dict(template_kwargs or {}), "layers": [int(l) for l in layers],
              "dtype": str(dtype), "poolings": list(poolings)}
    return _sha256(canonical_json(header).encode())


def request_key(pool: str, max_length: int, hashes: Sequence[str]) -> str:
    """sha256 (hex) of one ordered prompt list drawn from `pool` at `max_length` (a FeatureSet's key)."""
    h = hashlib.sha256(f"{pool}|{int(max_length)}|{len(hashes)}".encode())
    for x in hashes:
        h.update(x.encode())
    return h.hexdigest()


def _write(path: pathlib.Path, data: bytes) -> None:
    """`fileio.atomic_write_bytes`, raising StoreWriteError on OSError."""
    try:
        fileio.atomic_write_bytes(path, data)
    except OSError as e:
        raise StoreWriteError(e.errno, f"cannot write {path} ({e.strerror or e}); free disk space or pass a "
                                       f"writable store_dir") from e


_HASH_CACHE: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 seen by this process


def _file_sha256(path: pathlib.Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclasses.dataclass(frozen=True)
class PoolSpec:
    """What every row of a pool is: `len(layers)` x `dim` per pooling, computed under `info`."""
    key: str
    layers: tuple[int, ...]
    dim: int
    poolings: tuple[str, ...]
    info: dict  # encoder identity, template kwargs, dtype: for humans and FeatureSet

    def to_json(self) -> dict:
        return {"version": STORE_VERSION, "key": self.key, "layers": list(self.layers), "dim": self.dim,
                "poolings": list(self.poolings), "info": self.info}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PoolSpec":
        if d.get("version") != STORE_VERSION:
            raise ValueError(f"store version {d.get('version')!r}, this code reads version {STORE_VERSION}")
        return cls(key=str(d["key"]), layers=tuple(int(l) for l in d["layers"]), dim=int(d["dim"]),
                   poolings=tuple(d["poolings"]), info=dict(d["info"]))


@dataclasses.dataclass(frozen=True)
class Row:
    """Where one stored prompt lives, and how it was computed."""
    shard: str
    row: int
    full_len: int        # untruncated token count after templating
    cap: int | None      # max_length it was truncated to; None when computed whole


class FeatureStore:
    """One pool directory: shard files, their index and the prompt-list manifests."""

    def __init__(self, root: str | os.PathLike, spec: PoolSpec):
        unknown = set(spec.poolings) - set(POOLINGS)
        if unknown or not spec.poolings:
            raise ValueError(f"poolings must be a non-empty subset of {POOLINGS}, got {spec.poolings}")
        self.spec = spec
        self.dir = pathlib.Path(root).expanduser().resolve() / spec.key

    # ----- layout -----
    def data_path(self, shard: str, pooling: str) -> pathlib.Path:
        return self.dir / f"shard_{shard}.{pooling}.npy"

    def sidecar_path(self, shard: str) -> pathlib.Path:
        return self.dir / f"shard_{shard}.json"

    def set_path(self, key: str) -> pathlib.Path:
        return self.dir / "sets" / f"{key}.json"

    def shards(self) -> list[str]:
        """Names of the committed shards (sidecar present), sorted."""
        return sorted(p.name[len("shard_"):-len(".json")] for p in self.dir.glob("shard_*.json"))

    # ----- lifecycle -----
    @classmethod
    def open(cls, pool_dir: str | os.PathLike) -> "FeatureStore":
        """Opens an existing pool directory from its meta.json (ValueError naming the fix when unreadable)."""
        path = pathlib.Path(pool_dir).expanduser().resolve()
        meta = path / "meta.json"
        if not meta.exists():
            raise FileNotFoundError(f"{meta} not found: {path} is not a feature store pool directory")
        try:
            spec = PoolSpec.from_json(json.loads(meta.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{meta} is unreadable ({e}); rerun extract_features with the same settings to "
                             f"rewrite it (stored shards are kept when their checksums match)") from e
        if spec.key != path.name:
            raise ValueError(f"{meta} describes pool {spec.key[:12]}, not {path.name[:12]}; rerun extract_features "
                             f"to rewrite it")
        return cls(path.parent, spec)

    def create(self) -> None:
        """Creates the directory and meta.json (rewriting an unreadable or different one with a warning) and
        removes what killed writers left behind."""
        meta = self.dir / "meta.json"
        try:
            (self.dir / "sets").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreWriteError(e.errno, f"cannot create feature store directory {self.dir} ({e.strerror or e}); "
                                           f"pass a writable store_dir") from e
        want = canonical_json(self.spec.to_json())
        if meta.exists():
            try:
                have = canonical_json(json.loads(meta.read_text()))
            except (OSError, ValueError) as e:
                have = f"unreadable ({e})"
            if have == want:
                self.clean_orphans()
                return
            logging.warning("feature store %s: meta.json is %s; rewriting it (shards are checked against their own "
                            "checksums and this pool's shape, and recomputed when they do not match)", self.dir,
                            have if have.startswith("unreadable") else "for a different configuration")
        _write(meta, want.encode())
        self.clean_orphans()

    def clean_orphans(self, now: float | None = None) -> list[str]:
        """Removes ``*.tmp`` files of dead writers and data files whose shard never got its sidecar; returns
        their names. Files younger than ORPHAN_GRACE_S are kept (a live writer on another host)."""
        now = time.time() if now is None else now
        removed = []
        committed = set(self.shards())
        for path in list(self.dir.glob("*.tmp")) + list(self.dir.glob("sets/*.tmp")) + list(self.dir.glob("*.npy")):
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if path.suffix == ".tmp":
                m = _TMP_RE.search(path.name)
                dead = m is None or not _pid_alive(int(m.group(1)))
                stale = (dead and age > ORPHAN_GRACE_S) or age > ORPHAN_MAX_AGE_S
            else:
                stale = path.name.split(".")[0][len("shard_"):] not in committed and age > ORPHAN_GRACE_S
            if stale:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        if removed:
            logging.info("feature store %s: removed %d files left by interrupted writers: %s", self.dir,
                         len(removed), ", ".join(removed[:5]))
        return removed

    # ----- shards -----
    def read_sidecar(self, shard: str) -> dict | None:
        """The sidecar of `shard` when it parses and matches this pool's row shape, else None."""
        try:
            side = json.loads(self.sidecar_path(shard).read_text())
            n = len(side["hashes"])
            ok = (side["pool"] == self.spec.key and len(side["full_len"]) == n == len(side["cap"]) and n > 0
                  and all(side["files"][p]["shape"] == [len(self.spec.layers), n, self.spec.dim]
                          for p in self.spec.poolings))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return side if ok else None

    def check_shard(self, shard: str, side: Mapping[str, Any] | None = None) -> str | None:
        """None when `shard` is complete and intact (sidecar, shapes, dtypes, sha256), else the reason."""
        side = side or self.read_sidecar(shard)
        if side is None:
            return "unreadable or inconsistent sidecar"
        for pooling in self.spec.poolings:
            path = self.data_path(shard, pooling)
            entry = side["files"][pooling]
            if not path.exists():
                return f"{path.name} missing"
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                return f"{path.name} unreadable ({e})"
            if list(arr.shape) != entry["shape"] or arr.dtype != STORAGE_DTYPE:
                return f"{path.name} has shape {tuple(arr.shape)} {arr.dtype}, expected {entry['shape']} float32"
            del arr
            if _file_sha256(path) != entry["sha256"]:
                return f"{path.name} checksum mismatch"
        return None

    def invalidate(self, shard: str, reason: str) -> None:
        logging.warning("feature store %s: shard %s is invalid (%s); its prompts will be recomputed", self.dir,
                        shard, reason)
        self.sidecar_path(shard).unlink(missing_ok=True)
        for pooling in POOLINGS:
            self.data_path(shard, pooling).unlink(missing_ok=True)

    def write_shard(self, arrays: Mapping[str, np.ndarray], hashes: Sequence[str], full_len: Sequence[int],
                    cap: Sequence[int | None], stats: Mapping[str, Any] | None = None) -> str:
        """Writes one new shard of C rows ([L', C, D] per pooling): data files first, then the sidecar (commit
        marker) with their checksums; returns its name."""
        n = len(hashes)
        shape = (len(self.spec.layers), n, self.spec.dim)
        if not (n == len(full_len) == len(cap)) or n == 0:
            raise ValueError(f"a shard needs >= 1 row and one full_len/cap per hash, got {n}/{len(full_len)}/"
                             f"{len(cap)}")
        shard = uuid.uuid4().hex[:20]
        files = {}
        for pooling in self.spec.poolings:
            arr = np.ascontiguousarray(arrays[pooling], dtype=STORAGE_DTYPE)
            if arr.shape != shape:
                raise ValueError(f"shard {pooling}: shape {arr.shape}, expected {shape}")
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            data = buf.getvalue()
            path = self.data_path(shard, pooling)
            _write(path, data)
            st = path.stat()
            _HASH_CACHE[(str(path), st.st_size, st.st_mtime_ns)] = files.setdefault(
                    pooling, {"sha256": _sha256(data), "shape": list(shape)})["sha256"]
        side = {"pool": self.spec.key, "files": files, "hashes": list(hashes),
                "full_len": [int(x) for x in full_len], "cap": [None if c is None else int(c) for c in cap],
                "stats": dict(stats or {}), "time": time.time()}
        _write(self.sidecar_path(shard), canonical_json(side).encode())
        return shard

    # ----- index -----
    def index(self, wanted: Iterable[str] | None = None) -> dict[str, list[Row]]:
        """prompt hash -> its stored rows (all, or only those of `wanted` hashes), from the sidecars. Sidecars
        are written atomically (an in-progress shard has none yet), so an unreadable one is damage: the shard
        is invalidated."""
        wanted = None if wanted is None else set(wanted)
        out: dict[str, list[Row]] = {}
        for shard in self.shards():
            side = self.read_sidecar(shard)
            if side is None:
                self.invalidate(shard, "unreadable or inconsistent sidecar")
                continue
            for r, (h, n, c) in enumerate(zip(side["hashes"], side["full_len"], side["cap"])):
                if wanted is None or h in wanted:
                    out.setdefault(h, []).append(Row(shard, r, int(n), c))
        return out

    def resolve(self, hashes: Sequence[str], max_length: int) -> list[Row | None]:
        """Per prompt hash, a verified row usable at `max_length` (None = must be computed). Shards that fail
        verification are invalidated and their rows skipped."""
        idx = self.index(hashes)
        bad: set[str] = set()
        good: set[str] = set()
        out: list[Row | None] = []
        for h in hashes:
            found = None
            for row in idx.get(h, ()):
                usable = row.cap == max_length if row.cap is not None else row.full_len <= max_length
                if not usable or row.shard in bad:
                    continue
                if row.shard not in good:
                    reason = self.check_shard(row.shard)
                    if reason is not None:
                        bad.add(row.shard)
                        self.invalidate(row.shard, reason)
                        continue
                    good.add(row.shard)
                found = row
                break
            out.append(found)
        return out

    # ----- prompt lists -----
    def write_set(self, key: str, shards: Sequence[str], shard_of: np.ndarray, row_of: np.ndarray,
                  stats: Mapping[str, Any]) -> None:
        """Writes the manifest of one prompt list (prompt i = row `row_of[i]` of `shards[shard_of[i]]`)."""
        data = {"key": key, "shards": list(shards), "shard_of": np.asarray(shard_of).tolist(),
                "row_of": np.asarray(row_of).tolist(), "stats": dict(stats)}
        _write(self.set_path(key), canonical_json(data).encode())

    def read_set(self, key: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, dict]:
        """(shards, shard_of [N], row_of [N], stats) of a prompt list written by `write_set`, shards verified."""
        path = self.set_path(key)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: no prompt list {key[:12]} in {self.dir}; rerun "
                                    f"extract_features on it")
        try:
            d = json.loads(path.read_text())
            shards, shard_of, row_of = tuple(d["shards"]), np.asarray(d["shard_of"]), np.asarray(d["row_of"])
            stats = dict(d["stats"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is unreadable ({e}); rerun extract_features on that prompt list") from e
        for shard in shards:
            if (reason := self.check_shard(shard)) is not None:
                raise ValueError(f"feature store {self.dir}: shard {shard} is invalid ({reason}); rerun "
                                 f"extract_features on that prompt list to recompute it")
        return shards, shard_of, row_of, stats

    # ----- reading -----
    def gather(self, shard_of: np.ndarray, row_of: np.ndarray, shards: Sequence[str], pooling: str,
               layer_positions: Sequence[int] | None = None) -> np.ndarray:
        """[L'', N, D] float32: prompt i is row `row_of[i]` of shard `shards[shard_of[i]]`; only the layer
        slices at `layer_positions` (into spec.layers; all when None) are read, shard by shard (memory-mapped)."""
        if pooling not in self.spec.poolings:
            raise ValueError(f"pooling {pooling!r} not stored; available: {self.spec.poolings}")
        pos = list(range(len(self.spec.layers))) if layer_positions is None else [int(p) for p in layer_positions]
        out = np.empty((len(pos), len(shard_of), self.spec.dim), dtype=STORAGE_DTYPE)
        order = np.argsort(shard_of, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for group in np.split(order, bounds) if len(order) else []:
            path = self.data_path(shards[int(shard_of[group[0]])], pooling)
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read {path} ({e}); rerun extract_features to repair the store") from e
            rows = row_of[group]
            if rows.max() >= arr.shape[1] or arr.shape[0] != len(self.spec.layers):
                raise ValueError(f"{path} has shape {arr.shape}, too small for the rows asked; rerun "
                                 f"extract_features to repair the store")
            contiguous = np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows)))
            for j, p in enumerate(pos):
                out[j, group] = arr[p, rows[0]:rows[0] + len(rows)] if contiguous else arr[p][rows]
            del arr
        return out
