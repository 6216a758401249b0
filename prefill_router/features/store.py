"""On-disk chunked feature store: resumable, atomic, checksummed.

Layout of ``<root>/<key>/``::

    meta.json                      # what the store holds (written once, before any chunk)
    chunk_00000.last.npy           # [L', C, D] float32, C-order: one layer is one contiguous slice
    chunk_00000.mean.npy
    chunk_00000.json               # sidecar: sha256 + shape of each file; written LAST (commit marker)
    ...
    manifest.json                  # every chunk's sidecar, written after a full verification

Chunk i holds prompts [i*C, min((i+1)*C, N)) in the ORIGINAL prompt order. A chunk is valid only when
its sidecar exists and every file's shape, dtype and sha256 match it; anything else (missing, truncated,
modified, wrong shape) is logged and recomputed, never reused. Every file is written atomically
(`prefill_router.fileio`: ``*.tmp`` file, fsync, ``os.replace``); an OSError (disk full, unwritable
directory) removes the temporary file and raises `StoreWriteError` naming the directory.

The store key is an order-sensitive sha256 over the encoder identity (incl. weights sha256), template
kwargs, poolings, stored layers, max_length, compute dtype and the ordered prompt list.

Axes: L' stored layers, C prompts in a chunk, N prompts, D model width.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

from prefill_router import fileio

POOLINGS = ("last", "mean")
STORE_VERSION = 1
STORAGE_DTYPE = np.float32


class StoreWriteError(OSError):
    """The store directory cannot be written (disk full, permissions); nothing half-written is left valid."""


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def prompts_digest(prompts: Sequence[str]) -> str:
    """Order-sensitive sha256 over the prompts (each length-prefixed, so boundaries are unambiguous)."""
    h = hashlib.sha256()
    for p in prompts:
        data = p.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def store_key(*, encoder_identity: Any, template_kwargs: Mapping[str, Any] | None, poolings: Sequence[str],
              layers: Sequence[int], max_length: int, dtype: str, prompts: Sequence[str]) -> str:
    """sha256 (hex) identifying the features of `prompts` under one extraction configuration."""
    header = {
        "version": STORE_VERSION,
        "encoder_identity": encoder_identity,
        "template_kwargs": dict(template_kwargs or {}),
        "poolings": list(poolings),
        "layers": [int(l) for l in layers],
        "max_length": int(max_length),
        "dtype": str(dtype),
        "num_prompts": len(prompts),
        "prompts_sha256": prompts_digest(prompts),
    }
    return hashlib.sha256(_canonical_json(header).encode()).hexdigest()


def _sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _write(path: pathlib.Path, data: bytes) -> None:
    """`fileio.atomic_write_bytes`, raising StoreWriteError on OSError."""
    try:
        fileio.atomic_write_bytes(path, data)
    except OSError as e:
        raise StoreWriteError(e.errno, f"cannot write {path} ({e.strerror or e}); free disk space or pass a "
                                       f"writable store_dir") from e


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """What a store holds: `num_prompts` rows of `len(layers)` x `dim` per pooling, in chunks of `chunk_size`."""
    key: str
    num_prompts: int
    chunk_size: int
    layers: tuple[int, ...]
    dim: int
    poolings: tuple[str, ...]
    info: dict  # encoder identity, template kwargs, max_length, dtype: for humans and FeatureSet

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"], d["poolings"], d["version"] = list(self.layers), list(self.poolings), STORE_VERSION
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StoreSpec":
        return cls(key=d["key"], num_prompts=int(d["num_prompts"]), chunk_size=int(d["chunk_size"]),
                   layers=tuple(int(l) for l in d["layers"]), dim=int(d["dim"]),
                   poolings=tuple(d["poolings"]), info=dict(d["info"]))


class FeatureStore:
    """A directory of chunk files for one store key."""

    def __init__(self, root: str | os.PathLike, spec: StoreSpec):
        if spec.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {spec.chunk_size}")
        unknown = set(spec.poolings) - set(POOLINGS)
        if unknown or not spec.poolings:
            raise ValueError(f"poolings must be a non-empty subset of {POOLINGS}, got {spec.poolings}")
        self.spec = spec
        self.dir = pathlib.Path(root).expanduser().resolve() / spec.key

    # ----- layout -----
    @property
    def num_chunks(self) -> int:
        return -(-self.spec.num_prompts // self.spec.chunk_size)

    def chunk_range(self, i: int) -> tuple[int, int]:
        start = i * self.spec.chunk_size
        return start, min(start + self.spec.chunk_size, self.spec.num_prompts)

    def chunk_of(self, prompt_index: int) -> int:
        return prompt_index // self.spec.chunk_size

    def data_path(self, i: int, pooling: str) -> pathlib.Path:
        return self.dir / f"chunk_{i:05d}.{pooling}.npy"

    def sidecar_path(self, i: int) -> pathlib.Path:
        return self.dir / f"chunk_{i:05d}.json"

    def expected_shape(self, i: int) -> tuple[int, int, int]:
        start, stop = self.chunk_range(i)
        return len(self.spec.layers), stop - start, self.spec.dim

    # ----- lifecycle -----
    @classmethod
    def open(cls, store_dir: str | os.PathLike) -> "FeatureStore":
        """Opens an existing store directory (``<root>/<key>``) from its meta.json."""
        path = pathlib.Path(store_dir).expanduser().resolve()
        meta = path / "meta.json"
        if not meta.exists():
            raise FileNotFoundError(f"{meta} not found: {path} is not a feature store directory")
        return cls(path.parent, StoreSpec.from_json(json.loads(meta.read_text())))

    def create(self) -> None:
        """Creates the directory and meta.json; an existing store must describe the same spec."""
        meta = self.dir / "meta.json"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreWriteError(e.errno, f"cannot create feature store directory {self.dir} ({e.strerror or e}); "
                                           f"pass a writable store_dir") from e
        if meta.exists():
            existing = json.loads(meta.read_text())
            if _canonical_json(existing) != _canonical_json(self.spec.to_json()):
                raise ValueError(f"{meta} describes a different store (e.g. another chunk_size); use the same "
                                 f"settings or delete {self.dir}")
            return
        _write(meta, _canonical_json(self.spec.to_json()).encode())

    # ----- chunks -----
    def check_chunk(self, i: int) -> str | None:
        """None when chunk i is complete and intact, else the reason it is not."""
        sidecar = self.sidecar_path(i)
        if not sidecar.exists():
            return "missing"
        try:
            side = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            return f"unreadable sidecar ({e})"
        shape = self.expected_shape(i)
        for pooling in self.spec.poolings:
            entry = side.get("files", {}).get(pooling)
            path = self.data_path(i, pooling)
            if entry is None:
                return f"sidecar lacks {pooling!r}"
            if not path.exists():
                return f"{path.name} missing"
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                return f"{path.name} unreadable ({e})"
            if tuple(arr.shape) != shape or arr.dtype != STORAGE_DTYPE:
                return f"{path.name} has shape {tuple(arr.shape)} {arr.dtype}, expected {shape} float32"
            del arr
            if _sha256_file(path) != entry["sha256"]:
                return f"{path.name} checksum mismatch"
        return None

    def missing_chunks(self, chunk_ids: Sequence[int] | None = None) -> list[int]:
        """Chunks (of `chunk_ids`, default all) that must be computed; invalid ones are logged and invalidated."""
        out = []
        for i in (range(self.num_chunks) if chunk_ids is None else chunk_ids):
            reason = self.check_chunk(i)
            if reason is None:
                continue
            if reason != "missing":
                logging.warning("feature store %s: chunk %d is invalid (%s); recomputing it", self.dir, i, reason)
                self.sidecar_path(i).unlink(missing_ok=True)
            out.append(i)
        return out

    def write_chunk(self, i: int, arrays: Mapping[str, np.ndarray], stats: Mapping[str, int]) -> None:
        """Writes chunk i: data files first, then the sidecar (commit marker) with their checksums."""
        shape = self.expected_shape(i)
        self.sidecar_path(i).unlink(missing_ok=True)  # an old sidecar must not vouch for new data mid-write
        files = {}
        for pooling in self.spec.poolings:
            arr = np.ascontiguousarray(arrays[pooling], dtype=STORAGE_DTYPE)
            if arr.shape != shape:
                raise ValueError(f"chunk {i} {pooling}: shape {arr.shape}, expected {shape}")
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            data = buf.getvalue()
            path = self.data_path(i, pooling)
            _write(path, data)
            files[pooling] = {"name": path.name, "sha256": hashlib.sha256(data).hexdigest(), "shape": list(shape)}
        start, stop = self.chunk_range(i)
        side = {"chunk": i, "start": start, "stop": stop, "files": files, "stats": dict(stats)}
        _write(self.sidecar_path(i), _canonical_json(side).encode())

    def chunk_stats(self, i: int) -> dict:
        return json.loads(self.sidecar_path(i).read_text()).get("stats", {})

    def write_manifest(self) -> dict:
        """Verifies every chunk (checksums) and writes manifest.json; raises if any chunk is invalid."""
        bad = {i: r for i in range(self.num_chunks) if (r := self.check_chunk(i)) is not None}
        if bad:
            raise RuntimeError(f"feature store {self.dir} is incomplete: {len(bad)} invalid chunk(s), e.g. "
                               f"{dict(list(bad.items())[:3])}; rerun the extraction to recompute them")
        manifest = {"spec": self.spec.to_json(),
                    "chunks": [json.loads(self.sidecar_path(i).read_text()) for i in range(self.num_chunks)]}
        _write(self.dir / "manifest.json", _canonical_json(manifest).encode())
        return manifest

    # ----- reading -----
    def read(self, pooling: str, layer_positions: Sequence[int] | None = None) -> np.ndarray:
        """[L', N, D] float32 for the given positions into `spec.layers` (all when None); memory-maps each
        chunk and copies only the requested layer slices."""
        if pooling not in self.spec.poolings:
            raise ValueError(f"pooling {pooling!r} not stored; available: {self.spec.poolings}")
        pos = list(range(len(self.spec.layers))) if layer_positions is None else [int(p) for p in layer_positions]
        out = np.empty((len(pos), self.spec.num_prompts, self.spec.dim), dtype=STORAGE_DTYPE)
        for i in range(self.num_chunks):
            start, stop = self.chunk_range(i)
            arr = np.load(self.data_path(i, pooling), mmap_mode="r")
            if tuple(arr.shape) != self.expected_shape(i):
                raise ValueError(f"{self.data_path(i, pooling)} has shape {arr.shape}, expected "
                                 f"{self.expected_shape(i)}; rerun the extraction to repair the store")
            for j, p in enumerate(pos):
                out[j, start:stop] = arr[p]
            del arr
        return out
