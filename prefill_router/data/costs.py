"""Per-prompt cost model (method.md §6).

Axes: N prompts, K targets.

    cost_k(q) = n_in(q) * price_in_k / 1e6 + E[out_k] * price_out_k / 1e6        [$]

with prices in $ per million tokens, n_in(q) ~= 2 x word count (or exact counts from a tokenizer)
and E[out_k] the median observed output length of target k on TRAINING rows (output length is not
predicted per prompt). When a dataset carries real per-prompt costs they replace the estimate where
known (use_real_costs=True: right for *evaluating* the cost a policy incurs; a router *deciding*
before the call cannot see realised costs, so rank with use_real_costs=False).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from absl import logging

from .dataset import RoutingDataset, price_pair

DEFAULT_OUTPUT_TOKENS = 256.0  # used, with a warning, for a target without observed output lengths
TOKENS_PER_WORD = 2.0          # method.md §6: n_in ~= 2 x word count


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """target -> ($/M input tokens, $/M output tokens)."""
    prices: Mapping[str, tuple[float, float]]

    def __post_init__(self):
        clean = {str(name): price_pair(name, pair) for name, pair in self.prices.items()}
        if not clean:
            raise ValueError("PriceTable is empty; give at least one target price")
        object.__setattr__(self, "prices", clean)

    @classmethod
    def from_dict(cls, prices: Mapping[str, Any]) -> "PriceTable":
        """Values may be (in, out) pairs or dicts with 'input_price'/'output_price' (LLMRouter style)."""
        pairs = {}
        for name, value in prices.items():
            if isinstance(value, Mapping):
                if "input_price" not in value or "output_price" not in value:
                    raise ValueError(f"price entry of {name!r} lacks input_price/output_price: {value}")
                value = (value["input_price"], value["output_price"])
            pairs[name] = value
        return cls(pairs)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "PriceTable":
        """A JSON object in either `from_dict` form (e.g. LLMRouter's default_llm.json)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"price file {path} does not exist")
        with open(path, encoding="utf-8-sig") as f:
            try:
                prices = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"price file {path} is not valid JSON ({e})") from None
        if not isinstance(prices, Mapping):
            raise ValueError(f"price file {path} holds a {type(prices).__name__}; expected an object {{model: price}}")
        return cls.from_dict(prices)

    @classmethod
    def from_dataset(cls, ds: RoutingDataset) -> "PriceTable":
        return cls(ds.prices)

    @property
    def names(self) -> list[str]:
        return list(self.prices)

    def __getitem__(self, name: str) -> tuple[float, float]:
        if name not in self.prices:
            raise ValueError(f"no price for model {name!r}; known models: {sorted(self.prices)}")
        return self.prices[name]

    def per_token(self, targets: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """([K] input $/token, [K] output $/token) for `targets` in order."""
        pairs = np.array([self[t] for t in targets], dtype=np.float64).reshape(-1, 2)
        return pairs[:, 0] / 1e6, pairs[:, 1] / 1e6


def _count_tokens(tokenizer: Any, text: str) -> int:
    """Token count from a tokenizer with .encode (result: ids sequence or object with .ids) or a callable."""
    encoded = tokenizer.encode(text) if hasattr(tokenizer, "encode") else tokenizer(text)
    ids = getattr(encoded, "ids", encoded)
    return len(ids)


def estimate_input_tokens(prompts: Sequence[str], tokenizer: Any | Callable | None = None) -> np.ndarray:
    """[N] float64 input token counts: 2 x word count, or exact counts when a tokenizer is given."""
    if tokenizer is None:
        return np.array([TOKENS_PER_WORD * len(p.split()) for p in prompts], dtype=np.float64)
    return np.array([_count_tokens(tokenizer, p) for p in prompts], dtype=np.float64)


def _train_rows(ds: RoutingDataset, train_rows: Sequence[int] | np.ndarray | None) -> np.ndarray:
    if train_rows is None:
        train_rows = ds.rows("train")
        if train_rows.size == 0:
            raise ValueError("dataset has no train rows; assign splits or pass train_rows explicitly")
    rows = np.asarray(train_rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= ds.num_rows):
        raise IndexError(f"train_rows out of range for {ds.num_rows} rows")
    return rows


def expected_output_tokens(ds: RoutingDataset, train_rows: Sequence[int] | np.ndarray | None = None,
                           default: float = DEFAULT_OUTPUT_TOKENS) -> np.ndarray:
    """[K] median observed output tokens per target over `train_rows` (default: ds.rows('train')).

    A target without any observed length there gets `default` (logged as a warning).
    """
    rows = _train_rows(ds, train_rows)
    out = np.full(ds.num_targets, float(default))
    missing = []
    for j, target in enumerate(ds.targets):
        seen = np.array([], dtype=np.float64)
        if ds.output_tokens is not None:
            col = ds.output_tokens[rows, j]
            seen = col[~np.isnan(col)]
        if seen.size:
            out[j] = float(np.median(seen))
        else:
            missing.append(target)
    if missing:
        logging.warning("no observed output tokens on training rows for %s; using the default %g "
                        "tokens", missing, default)
    return out


def per_prompt_costs(ds: RoutingDataset, price_table: PriceTable | Mapping | None = None,
                     train_rows: Sequence[int] | np.ndarray | None = None, use_real_costs: bool = True,
                     tokenizer: Any = None, default_output_tokens: float = DEFAULT_OUTPUT_TOKENS
                     ) -> np.ndarray:
    """[N, K] float64 $ cost of sending each prompt to each target (formula in the module docstring).

    price_table defaults to the dataset's prices; train_rows (for the output-length medians)
    default to ds.rows('train'). With use_real_costs, entries with a known real cost use it.
    """
    if price_table is None:
        price_table = PriceTable.from_dataset(ds)
    elif not isinstance(price_table, PriceTable):
        price_table = PriceTable.from_dict(price_table)
    p_in, p_out = price_table.per_token(ds.targets)
    n_in = estimate_input_tokens(ds.prompts, tokenizer)
    n_out = expected_output_tokens(ds, train_rows, default_output_tokens)
    costs = n_in[:, None] * p_in[None, :] + (n_out * p_out)[None, :]
    if use_real_costs and ds.costs is not None:
        known = ~np.isnan(ds.costs)
        costs = np.where(known, ds.costs.astype(np.float64), costs)
    return costs
