"""RoutingDataset: prompts x targets correctness labels, with split, prices and optional costs.

Axes: N prompts (rows), K targets (columns, fixed order).

A label is 1.0 when a target answered the prompt correctly, 0.0 when it did not and NaN when it was
never observed; `mask` is True exactly where a label exists. A missing label is never 0.
`split[i]` is 'train', 'val' or 'test', or '' (UNASSIGNED) before `splits.assign_splits` has run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from prefill_router import fileio

SPLIT_NAMES = ("train", "val", "test")
UNASSIGNED = ""
_FORMAT_VERSION = 1


def _as_matrix(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    array = np.array(value, dtype=np.float32, copy=True)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected [N, K] = {shape}")
    return array


def price_pair(name: str, value: Any) -> tuple[float, float]:
    """(input $/M, output $/M) >= 0 from a 2-sequence of numbers; ValueError naming the model otherwise."""
    try:
        pair = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        pair = None
    if pair is None or len(pair) != 2 or not all(np.isfinite(pair)) or min(pair) < 0:
        raise ValueError(f"price of {name!r} is {value!r}; expected a pair [input $/M, output $/M] of numbers >= 0")
    return pair


def _text_bytes(text: str) -> np.ndarray:
    """UTF-8 bytes as a uint8 array (fixed-width unicode arrays would pad every prompt to the longest)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _bytes_text(array: np.ndarray) -> str:
    return array.tobytes().decode("utf-8")


@dataclasses.dataclass
class RoutingDataset:
    """N prompts x K targets of correctness labels.

    Attributes:
        prompts: N rendered user prompts (what the encoder sees).
        tasks: N task/benchmark names.
        targets: K target model names, fixed column order.
        labels: [N, K] float32 in {0, 1}; NaN where missing.
        mask: [N, K] bool, True where a label exists (None: derived as ~isnan(labels)).
        split: [N] str in {'train', 'val', 'test'} or '' (unassigned); None: all unassigned.
        prices: target -> ($/M input tokens, $/M output tokens); every target needs one, extra
            entries are dropped.
        output_tokens: [N, K] float32 observed output lengths, NaN where unknown; or None.
        costs: [N, K] float32 real per-prompt $ cost where known (NaN elsewhere); or None.
        name: short dataset name (used in file names and reports).
        scores: [N, K] float32 raw (possibly graded) scores the labels were thresholded from, NaN
            where missing; or None.
        meta: JSON-serialisable provenance (source, threshold, price assumptions, dropped rows, ...);
            dataset-level: `subset` does not slice it.
        row_meta: per-row extras {name: [N] array of numbers or strings} (e.g. item difficulty);
            sliced by `subset`, saved by `save`.
        allow_unlabelled_targets: if False, a target without a single observed label is an error.
    """
    prompts: list[str]
    tasks: list[str]
    targets: list[str]
    labels: np.ndarray
    mask: np.ndarray | None
    split: np.ndarray | None
    prices: dict[str, tuple[float, float]]
    output_tokens: np.ndarray | None = None
    costs: np.ndarray | None = None
    name: str = "routing"
    scores: np.ndarray | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    allow_unlabelled_targets: bool = False
    row_meta: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.prompts = [str(p) for p in self.prompts]
        self.tasks = [str(t) for t in self.tasks]
        self.targets = [str(t) for t in self.targets]
        n, k = len(self.prompts), len(self.targets)
        if k == 0:
            raise ValueError("RoutingDataset needs at least one target; `targets` is empty")
        if len(set(self.targets)) != k:
            dupes = sorted({t for t in self.targets if self.targets.count(t) > 1})
            raise ValueError(f"duplicate target names {dupes}; target names must be unique")
        if len(self.tasks) != n:
            raise ValueError(f"{len(self.tasks)} tasks for {n} prompts; give one task name per prompt")
        self.labels = _as_matrix("labels", self.labels, (n, k))
        if self.mask is None:
            self.mask = ~np.isnan(self.labels)
        self.mask = np.array(self.mask, dtype=bool, copy=True)
        if self.mask.shape != (n, k):
            raise ValueError(f"mask has shape {self.mask.shape}, expected [N, K] = {(n, k)}")
        nan = np.isnan(self.labels)
        if np.any(nan & self.mask):
            raise ValueError(f"{int(np.sum(nan & self.mask))} labels are NaN where mask is True; "
                             "set mask False for missing labels")
        if np.any(~nan & ~self.mask):
            raise ValueError(f"{int(np.sum(~nan & ~self.mask))} labels are set where mask is False; "
                             "missing labels must be NaN")
        observed = self.labels[self.mask]
        if np.any((observed != 0) & (observed != 1)):
            bad = sorted(set(np.unique(observed[(observed != 0) & (observed != 1)]).tolist()))[:5]
            raise ValueError(f"labels must be 0 or 1 where observed; found {bad}. "
                             "Threshold graded scores first (keep them in `scores`)")
        if not self.allow_unlabelled_targets:
            empty = [t for t, c in zip(self.targets, self.mask.sum(0)) if c == 0]
            if empty:
                raise ValueError(f"targets {empty} have no observed label; drop them with "
                                 "select_targets() or pass allow_unlabelled_targets=True")
        if self.split is None:
            self.split = np.full(n, UNASSIGNED)
        split = [str(s) for s in np.asarray(self.split).reshape(-1)]
        if len(split) != n:
            raise ValueError(f"split has {len(split)} entries for {n} prompts")
        unknown = sorted(set(split) - set(SPLIT_NAMES) - {UNASSIGNED})
        if unknown:
            raise ValueError(f"unknown split names {unknown}; use {SPLIT_NAMES} (or '' for unassigned)")
        self.split = np.array(split, dtype="<U5")
        self.prices = self._check_prices(self.prices)
        for field in ("output_tokens", "costs", "scores"):
            value = getattr(self, field)
            if value is None:
                continue
            value = _as_matrix(field, value, (n, k))
            if np.any(np.isinf(value)):
                raise ValueError(f"{field} holds inf; use NaN for unknown entries")
            if field != "scores" and np.any(value[~np.isnan(value)] < 0):
                raise ValueError(f"{field} holds negative values")
            setattr(self, field, value)
        if self.scores is not None and np.any(np.isnan(self.scores) & self.mask):
            raise ValueError("scores are NaN where a label exists; give the score of every label")
        self.meta = dict(self.meta)
        row_meta = {}
        for key, value in dict(self.row_meta or {}).items():
            array = np.asarray(value)
            if array.shape != (n,) or array.dtype.kind not in "biufU":
                raise ValueError(f"row_meta[{key!r}] must be a [N={n}] array of numbers or strings, "
                                 f"got shape {array.shape} dtype {array.dtype}")
            row_meta[str(key)] = array.copy()
        self.row_meta = row_meta
        self.name = str(self.name)

    def _check_prices(self, prices: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
        missing = [t for t in self.targets if t not in prices]
        if missing:
            raise ValueError(f"no price for targets {missing}; give (input $/M tokens, output $/M tokens) for every "
                             "target (--config.data.prices=prices.json)")
        return {t: price_pair(t, prices[t]) for t in self.targets}

    # ----------------------------------------------------------------------------- properties
    @property
    def num_rows(self) -> int:
        return len(self.prompts)

    @property
    def num_targets(self) -> int:
        return len(self.targets)

    def __len__(self) -> int:
        return len(self.prompts)

    def target_index(self, name: str) -> int:
        """Column of target `name`; ValueError listing the known targets otherwise."""
        if name not in self.targets:
            raise ValueError(f"unknown target {name!r}; known targets: {self.targets}")
        return self.targets.index(name)

    @property
    def has_split(self) -> bool:
        """True when every row is assigned to train/val/test."""
        return bool(np.all(self.split != UNASSIGNED))

    def rows(self, split: str) -> np.ndarray:
        """Indices [n] (int64, ascending) of the rows in `split` ('train', 'val' or 'test')."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; use one of {SPLIT_NAMES}")
        return np.flatnonzero(self.split == split).astype(np.int64)

    # ----------------------------------------------------------------------------- views
    def _replace(self, **changes) -> "RoutingDataset":
        return dataclasses.replace(self, **changes)

    def subset(self, rows: Iterable[int] | np.ndarray) -> "RoutingDataset":
        """The rows `rows` (int indices in any order, or a [N] bool mask), as a new dataset.

        A subset may hold targets without labels (e.g. few test rows), so the unlabelled-target
        check is off for it.
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (self.num_rows,):
                raise ValueError(f"boolean row mask has shape {rows.shape}, expected ({self.num_rows},)")
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64).reshape(-1)
        if rows.size and (rows.min() < -self.num_rows or rows.max() >= self.num_rows):
            raise IndexError(f"row index out of range for {self.num_rows} rows")

        def take(a):
            return None if a is None else a[rows]
        return self._replace(
                prompts=[self.prompts[i] for i in rows], tasks=[self.tasks[i] for i in rows],
                labels=self.labels[rows], mask=self.mask[rows], split=self.split[rows],
                output_tokens=take(self.output_tokens), costs=take(self.costs), scores=take(self.scores),
                meta=dict(self.meta), allow_unlabelled_targets=True,
                row_meta={k: v[rows] for k, v in self.row_meta.items()})

    def select_targets(self, names: Sequence[str]) -> "RoutingDataset":
        """Columns `names` (in that order), as a new dataset."""
        names = list(names)
        if not names:
            raise ValueError("select_targets needs at least one target name")
        cols = np.array([self.target_index(n) for n in names], dtype=np.int64)

        def take(a):
            return None if a is None else a[:, cols]
        return self._replace(
                targets=names, labels=take(self.labels), mask=take(self.mask),
                prices={n: self.prices[n] for n in names}, output_tokens=take(self.output_tokens),
                costs=take(self.costs), scores=take(self.scores), meta=dict(self.meta))

    def drop_targets(self, names: Sequence[str]) -> "RoutingDataset":
        """All columns but `names` (config ``data.drop_targets``); recorded in meta['dropped_targets']."""
        if not names:
            return self
        unknown = [n for n in names if n not in self.targets]
        if unknown:
            raise ValueError(f"data.drop_targets names {unknown}, which are not targets of {self.name!r}: "
                             f"{self.targets}")
        keep = [t for t in self.targets if t not in set(names)]
        if not keep:
            raise ValueError(f"data.drop_targets drops every target of {self.name!r}; keep at least one")
        out = self.select_targets(keep)
        out.meta["dropped_targets"] = list(names)
        return out

    def with_split(self, split: Sequence[str] | np.ndarray) -> "RoutingDataset":
        """A copy with a new [N] split assignment."""
        return self._replace(split=np.asarray(split), meta=dict(self.meta))

    # ----------------------------------------------------------------------------- io
    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Writes one `.npz` (no pickles) atomically: arrays, prompts/tasks as UTF-8 JSON, a JSON header."""
        path = pathlib.Path(path)
        header = {"format_version": _FORMAT_VERSION, "name": self.name, "targets": self.targets,
                  "prices": {t: list(p) for t, p in self.prices.items()}, "meta": self.meta,
                  "allow_unlabelled_targets": self.allow_unlabelled_targets,
                  "row_meta_text": sorted(k for k, v in self.row_meta.items() if v.dtype.kind == "U")}
        try:
            header_json = json.dumps(header)
        except TypeError as err:
            raise ValueError(f"dataset meta is not JSON-serialisable: {err}") from err
        arrays = {"header": _text_bytes(header_json), "prompts": _text_bytes(json.dumps(self.prompts)),
                  "tasks": _text_bytes(json.dumps(self.tasks)), "labels": self.labels,
                  "mask": self.mask, "split": self.split.astype(str)}
        for field in ("output_tokens", "costs", "scores"):
            if getattr(self, field) is not None:
                arrays[field] = getattr(self, field)
        for key, value in self.row_meta.items():
            arrays[f"row_meta/{key}"] = (_text_bytes(json.dumps(value.tolist())) if value.dtype.kind == "U"
                                         else value)
        path.parent.mkdir(parents=True, exist_ok=True)
        with fileio.atomic_writer(path) as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RoutingDataset":
        """Reads a file written by `save` (validated again on construction)."""
        path = pathlib.Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; write it with RoutingDataset.save")
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(_bytes_text(z["header"]))
            if header.get("format_version") != _FORMAT_VERSION:
                raise ValueError(f"{path} has format version {header.get('format_version')}, "
                                 f"expected {_FORMAT_VERSION}; re-create it")
            optional = {f: (z[f] if f in z.files else None) for f in ("output_tokens", "costs", "scores")}
            prompts = json.loads(_bytes_text(z["prompts"]))
            row_meta = {}
            for field in z.files:
                if field.startswith("row_meta/"):
                    key = field[len("row_meta/"):]
                    row_meta[key] = (np.array(json.loads(_bytes_text(z[field])), dtype=str)
                                     if key in header["row_meta_text"] else z[field])
            n = len(prompts)
            return cls(prompts=prompts, tasks=json.loads(_bytes_text(z["tasks"])),
                       targets=header["targets"], labels=z["labels"].reshape(n, -1),
                       mask=z["mask"].reshape(n, -1), split=z["split"],
                       prices={t: tuple(p) for t, p in header["prices"].items()},
                       name=header["name"], meta=header["meta"],
                       allow_unlabelled_targets=header["allow_unlabelled_targets"], row_meta=row_meta,
                       **optional)

    to_npz = save
    from_npz = load

    # ----------------------------------------------------------------------------- report
    def summary(self) -> str:
        """One short multi-line description: sizes, splits, per-target accuracy and coverage."""
        counts = {s: int(np.sum(self.split == s)) for s in SPLIT_NAMES}
        unassigned = int(np.sum(self.split == UNASSIGNED))
        lines = [f"RoutingDataset {self.name!r}: {self.num_rows} prompts x {self.num_targets} targets, "
                 f"{len(set(self.tasks))} tasks",
                 "  split: " + ", ".join(f"{s}={c}" for s, c in counts.items())
                 + (f", unassigned={unassigned}" if unassigned else ""),
                 f"  extras: output_tokens={'yes' if self.output_tokens is not None else 'no'}, "
                 f"costs={'yes' if self.costs is not None else 'no'}, "
                 f"scores={'yes' if self.scores is not None else 'no'}"]
        for j, t in enumerate(self.targets):
            m = self.mask[:, j]
            acc = float(np.mean(self.labels[m, j])) if m.any() else float("nan")
            lines.append(f"  {t}: acc={acc:.3f} labelled={int(m.sum())}/{self.num_rows} "
                         f"price=({self.prices[t][0]:g}, {self.prices[t][1]:g}) $/M")
        return "\n".join(lines)
