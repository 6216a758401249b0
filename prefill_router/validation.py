"""Early checks, so that a bad config or dataset fails in seconds, before any expensive stage.

    check_config(config)              from the config alone, before the data stage: encoder and target names,
                                      router.keep <= num_seeds, layer criterion and layout, data.path and
                                      data.prices files, data.drop_targets form.
    check_split(ds, train, test, config)  right after the data stage, before features: enough rows on both
                                      sides of the split, no target whose training labels hold one class.
Every failure is a ValueError / FileNotFoundError whose one-line message names the problem and the fix.
Fields absent from a config (experiments that do not read them) are skipped.
"""
import pathlib

import numpy as np

from prefill_router.baselines.sentence import SENTENCE_ENCODERS
from prefill_router.data.costs import PriceTable
from prefill_router.encoders import registry
from prefill_router.probes.select import CRITERIA

LAYOUTS = ("per_target", "shared")
ROUTER_KINDS = ("shared_trunk", "cross_attention")
CROSS_ATTENTION_QUERIES = ("prefill", "sentence")
REWARD_FORMS = ("linear", "exponential")
FILE_SOURCES = ("routerbench", "long")
_SPEC_PREFIXES = ("gguf:", "hf:", "hub:")


def _get(config, dotted: str, default=None):
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "get") or part not in node:
            return default
        node = node[part]
    return node


def check_encoder_name(name: str, field: str) -> None:
    """A registry name or a 'gguf:/file' / 'hf:/dir' / 'hub:org/name' spec whose local path exists."""
    if name in registry.ENCODERS:
        return
    kind, sep, rest = name.partition(":")
    if sep and f"{kind}:" in _SPEC_PREFIXES:
        if kind in ("gguf", "hf") and not pathlib.Path(rest).expanduser().exists():
            raise FileNotFoundError(f"{field}: {name!r} names {rest}, which does not exist")
        return
    raise ValueError(f"{field}: unknown encoder {name!r}; known: {', '.join(sorted(registry.ENCODERS))} "
                     f"(or a spec gguf:/path/file.gguf, hf:/path/dir, hub:org/name)")


def prices_from_config(config) -> dict | None:
    """``data.prices`` (a JSON price file, ``PriceTable.from_json``) as {target: (in $/M, out $/M)}; None if unset."""
    path = _get(config, "data.prices", "")
    if not path:
        return None
    try:
        return dict(PriceTable.from_json(pathlib.Path(path).expanduser()).prices)
    except FileNotFoundError:
        raise FileNotFoundError(f"data.prices file {path} does not exist; give a JSON file "
                                '{"model": [input $/M, output $/M], ...}') from None
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"data.prices file {path}: {e}; expected a JSON object "
                         '{"model": [input $/M, output $/M] or {"input_price": .., "output_price": ..}}') from None


def check_config(config) -> None:
    """Checks of the module docstring that need only the config; raises on the first problem."""
    for name in _get(config, "encoders", ()) or ():
        check_encoder_name(name, "encoders")
    if _get(config, "data.source") == "collect":
        for name in _get(config, "data.targets", ()) or ():
            check_encoder_name(name, "data.targets")
    sentence = _get(config, "baselines.sentence_encoder")
    semantic = _get(config, "baselines.semantic", False) or _get(config, "baselines.mf", False)
    if semantic and sentence is not None and sentence not in SENTENCE_ENCODERS:
        raise ValueError(f"baselines.sentence_encoder: unknown {sentence!r}; known: {', '.join(SENTENCE_ENCODERS)}")
    seeds, keep = _get(config, "router.num_seeds"), _get(config, "router.keep")
    if seeds is not None and keep is not None and not 1 <= keep <= seeds:
        raise ValueError(f"router.keep={keep} must be between 1 and router.num_seeds={seeds}; "
                         f"set --config.router.keep={max(1, min(keep, seeds))} or raise router.num_seeds")
    criterion = _get(config, "probe.criterion")
    if criterion is not None and criterion not in CRITERIA:
        raise ValueError(f"probe.criterion={criterion!r}; choose one of {', '.join(CRITERIA)}")
    layout = _get(config, "router.layout")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"router.layout={layout!r}; choose one of {', '.join(LAYOUTS)}")
    _check_router_kind(config)
    if _get(config, "data.source") in FILE_SOURCES:
        path = _get(config, "data.path", "")
        if not path:
            raise ValueError(f"data.source={_get(config, 'data.source')!r} reads a file: set --config.data.path=FILE")
        if not pathlib.Path(path).expanduser().is_file():
            raise FileNotFoundError(f"data.path {path} does not exist")
    drop = _get(config, "data.drop_targets", ())
    if isinstance(drop, str) or not all(isinstance(t, str) and t for t in drop):
        raise ValueError(f"data.drop_targets={drop!r} must be a tuple of target names, e.g. "
                         "--config.data.drop_targets=\"('model_a','model_b')\"")
    prices_from_config(config)


def _check_subset(config, field: str, allowed: tuple) -> None:
    values = _get(config, field)
    if values is not None and (isinstance(values, str) or not values or set(values) - set(allowed)):
        raise ValueError(f"{field}={values!r} must be a non-empty tuple drawn from {allowed}")


def _check_router_kind(config) -> None:
    """router.kind and the cross-attention router's fields (router/cross_attention.py, reward routing)."""
    kind = _get(config, "router.kind")
    if kind is not None and kind not in ROUTER_KINDS:
        raise ValueError(f"router.kind={kind!r}; choose one of {', '.join(ROUTER_KINDS)}")
    _check_subset(config, "cross_attention.queries", CROSS_ATTENTION_QUERIES)
    _check_subset(config, "routing.reward_forms", REWARD_FORMS)
    ranges = {"routing.n_lambdas": (2, None), "cross_attention.width": (1, None), "cross_attention.ffn": (1, None),
              "cross_attention.dropout": (0, 1), "cross_attention.length_weight": (0, None)}  # [low, high)
    for field, (low, high) in ranges.items():
        value = _get(config, field)
        if value is not None and not (low <= value and (high is None or value < high)):
            raise ValueError(f"{field}={value!r} must be >= {low}" + (f" and < {high}" if high is not None else ""))


def min_train_rows(config) -> int:
    """Training rows the pipeline needs: two per probe CV fold (each fold sees both classes), at least 10."""
    return max(10, 2 * int(_get(config, "probe.cv_folds", 5) or 5))


def check_split(ds, train: np.ndarray, test: np.ndarray, config) -> None:
    """Checks of the module docstring on the split dataset (train/test row indices); raises on the first problem."""
    need = min_train_rows(config)
    if len(train) < need or len(test) < 1:
        raise ValueError(f"the split has {len(train)} train / {len(test)} test rows; the pipeline needs >= {need} "
                         f"train and >= 1 test rows: use a larger dataset or change data.test_fraction "
                         f"(now {_get(config, 'data.test_fraction')}) / data.max_train / data.max_test")
    y, m = ds.labels[train], ds.mask[train]
    single = [t for k, t in enumerate(ds.targets)
              if m[:, k].any() and np.unique(y[m[:, k], k]).size < 2]
    if single:
        listed = ",".join(repr(t) for t in single) + ("," if len(single) == 1 else "")
        raise ValueError(f"targets {single} have a single label class on the {len(train)} training rows "
                         f"(always right or always wrong), so no router can learn them: drop them with "
                         f"--config.data.drop_targets=\"({listed})\" or use more data")
