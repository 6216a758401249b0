"""Length bucketing: group prompts into a few padded [B, T] shapes.

Prompts are sorted by token length (stable, so ties keep their original order) and cut, in that
order, into consecutive batches. A batch's padded length T is the grid step (default: 4 steps per
octave, multiples of 8: 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, ...; ``max_length`` is always the
last entry) of its longest prompt; with a token budget its size is B(T) = floor(batch_tokens / T)
rounded down to a multiple of the number of data-parallel devices, so B x T stays roughly constant.
Because batches run across grid steps instead of stopping at each one, a batch has dummy rows only
at the end of the plan or where its next prompt needs a longer T than the batch's budget allows;
it is then padded only up to the smallest allowed size that fits: ``num_devices * 2**k`` or the full
size. Compiled shapes: about one per grid step used, plus a few partial sizes.

    padding_efficiency = sum(real tokens) / sum(B_padded * T_padded)

Axes: B batch rows (padded), T tokens (padded), N prompts.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Batch:
    """One padded batch: `indices` [n_real] into the caller's list, padded to [batch_size, length]."""
    indices: np.ndarray
    batch_size: int
    length: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.batch_size, self.length


@dataclasses.dataclass(frozen=True)
class BucketPlan:
    """The batches (in execution order) and their padding statistics."""
    batches: list[Batch]
    real_tokens: int
    padded_tokens: int

    @property
    def padding_efficiency(self) -> float:
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Distinct [B, T] shapes, i.e. the number of compiled programs."""
        return sorted({b.shape for b in self.batches})


def default_length_grid(max_length: int, min_length: int = 16, steps_per_octave: int = 4) -> list[int]:
    """Geometric grid of padded lengths, rounded up to multiples of 8, capped by (and ending at) max_length."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    grid, k = set(), 0
    while (value := round(min_length * 2 ** (k / steps_per_octave), 6)) < max_length:
        grid.add(min(max_length, int(math.ceil(value / 8) * 8)))
        k += 1
    grid.add(max_length)
    return sorted(grid)


def _allowed_sizes(full: int, num_devices: int) -> list[int]:
    sizes = {full}
    size = num_devices
    while size < full:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def _round_to_devices(size: int, num_devices: int) -> int:
    return max(num_devices, (size // num_devices) * num_devices)


def plan_batches(lengths: Sequence[int], *, batch_tokens: int | None = None, batch_size: int | None = None,
                 max_length: int = 2048, length_grid: Sequence[int] | None = None,
                 num_devices: int = 1) -> BucketPlan:
    """Plans padded batches for prompts of the given token lengths (already truncated to max_length).

    Exactly one of `batch_tokens` (token budget per batch: B = floor(batch_tokens / T), rounded down to a
    multiple of `num_devices`, at least `num_devices`) or `batch_size` (fixed B, rounded up to a multiple
    of `num_devices`) must be given. Deterministic: the same inputs give the same plan.
    """
    if (batch_tokens is None) == (batch_size is None):
        raise ValueError("pass exactly one of batch_tokens (token budget per batch) or batch_size")
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > max_length):
        raise ValueError(f"token lengths must lie in [1, max_length={max_length}]; got "
                         f"[{lengths.min()}, {lengths.max()}] (truncate prompts before bucketing)")
    grid = sorted(set(int(g) for g in (length_grid or default_length_grid(max_length))))
    if grid[0] < 1 or grid[-1] < max_length:
        grid = sorted(set(g for g in grid if g >= 1) | {max_length})
    grid_arr = np.asarray(grid)

    def full_size(length: int) -> int:
        if batch_tokens is not None:
            return _round_to_devices(batch_tokens // length, num_devices)
        return int(math.ceil(batch_size / num_devices) * num_devices)

    order = np.argsort(lengths, kind="stable")
    step = np.searchsorted(grid_arr, lengths[order], side="left")                    # grid step, nondecreasing
    padded_len = grid_arr[step]
    fits = np.asarray([full_size(int(t)) for t in grid_arr], dtype=np.int64)[step]   # B(T) of each prompt
    batches: list[Batch] = []
    padded_tokens, start, n = 0, 0, len(order)
    while start < n:
        # the longest run whose last (longest) prompt's budget still holds it: B(T_last) >= count; since B(T)
        # is nonincreasing along the sorted order, the condition holds for a prefix of counts
        window = fits[start:start + int(fits[start])]
        count = int(np.sum(window >= np.arange(1, len(window) + 1)))
        end = start + count
        length = int(padded_len[end - 1])
        size = next(s for s in _allowed_sizes(int(fits[end - 1]), num_devices) if s >= count)
        batches.append(Batch(indices=order[start:end], batch_size=size, length=length))
        padded_tokens += size * length
        start = end
    return BucketPlan(batches=batches, real_tokens=int(lengths.sum()), padded_tokens=padded_tokens)


def pad_batch(token_ids: Sequence[Sequence[int]], batch: Batch, pad_id: int,
              side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Builds int32 (input_ids, attention_mask), both [batch_size, length], for one planned batch.

    Dummy rows (beyond the real prompts) hold a single real pad token so that every row has mask
    sum >= 1; their outputs are discarded.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    ids = np.full(batch.shape, pad_id, dtype=np.int32)
    mask = np.zeros(batch.shape, dtype=np.int32)
    for row, i in enumerate(batch.indices):
        seq = token_ids[i]
        n = len(seq)
        if n > batch.length:
            raise ValueError(f"prompt {i} has {n} tokens > padded length {batch.length}")
        cols = slice(0, n) if side == "right" else slice(batch.length - n, batch.length)
        ids[row, cols] = seq
        mask[row, cols] = 1
    for row in range(len(batch.indices), batch.batch_size):
        col = 0 if side == "right" else batch.length - 1
        mask[row, col] = 1
    return ids, mask
