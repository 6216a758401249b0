"""Benchmark: cloze label collection with every option of an item in one packed row (the prefix run once)
vs one row per (item, option), the layout before packing, in one process on the same items.

    python benchmarks/label_collect.py                                   # the default's 3 targets, 200 items
    python benchmarks/label_collect.py --targets=smollm2_135m --items=100

Items are the embedded default's generator (uniform mix, difficulties 1-3, `--seed`). Each layout runs
`--repeats` times per target; the first run includes XLA compilation, the best later one is the "warm"
time. Prints items/s per target and layout, the ratio packed / unpacked (target >= 2x) and the largest
score difference between the layouts (they compute the same log-probs).
"""
from __future__ import annotations

import time

import numpy as np
from absl import app, flags

from prefill_router.data import synthetic
from prefill_router.encoders.registry import load_encoder
from prefill_router.labels import cloze

_TARGETS = flags.DEFINE_list("targets", ["smollm2_135m", "gemma3_270m", "qwen25_coder_05b"], "target registry names")
_ITEMS = flags.DEFINE_integer("items", 200, "generated items")
_SEED = flags.DEFINE_integer("seed", 0, "item seed")
_REPEATS = flags.DEFINE_integer("repeats", 2, "runs per layout (the first includes compilation)")
_BATCH_TOKENS = flags.DEFINE_integer("batch_tokens", 2048, "tokens per padded batch")


def _timed(enc, items, share_prefix: bool) -> tuple[list[float], np.ndarray, dict]:
    walls, sums, stats = [], None, {}
    for _ in range(_REPEATS.value):
        t0 = time.perf_counter()
        sums, _, stats = cloze.score_items_raw(enc, items, share_prefix=share_prefix,
                                               batch_tokens=_BATCH_TOKENS.value, progress=False)
        walls.append(time.perf_counter() - t0)
    return walls, sums, stats


def main(argv):
    del argv
    items = synthetic.generate_items(_ITEMS.value, seed=_SEED.value)
    print(f"{len(items)} items (uniform mix, seed {_SEED.value}), {sum(len(it.options) for it in items)} options, "
          f"batch_tokens {_BATCH_TOKENS.value}, {_REPEATS.value} runs per layout")
    total = {True: 0.0, False: 0.0}
    for name in _TARGETS.value:
        enc = load_encoder(name)
        res, warm_of = {}, {}
        for share in (False, True):
            walls, sums, stats = _timed(enc, items, share)
            warm = warm_of[share] = min(walls[1:] or walls)
            total[share] += warm
            res[share] = sums
            print(f"  {name:18s} {'packed  ' if share else 'unpacked'}: rows {stats['rows']:5d}, tokens "
                  f"{stats['tokens']:7d} (padded {stats['padded_tokens']:7d}), first run {walls[0]:6.1f} s, warm "
                  f"{warm:6.1f} s = {len(items) / warm:6.2f} items/s")
        finite = np.isfinite(res[True])
        diff = float(np.abs(res[True][finite] - res[False][finite]).max())
        print(f"  {name:18s} packed is {warm_of[False] / warm_of[True]:.2f}x faster per item; "
              f"max |score difference| {diff:.2e}")
    print(f"all targets, warm: unpacked {len(items) / total[False]:.2f} items/s, packed {len(items) / total[True]:.2f} "
          f"items/s: packed is {total[False] / total[True]:.2f}x faster per item (target >= 2x)")


if __name__ == "__main__":
    app.run(main)
