"""Loaders that turn real routing data into RoutingDatasets.

Axes: N prompts, K targets.

Every loader returns the rows as the source has them (no deduplication) and keeps the source's own
train/test split when it has one; otherwise rows are unassigned ('') and `splits.assign_splits`
must run before training (`load_dataset` does both). Graded scores become labels as
score >= threshold -> 1 (correct), else 0; the raw scores stay in `ds.scores`.

    load_llmrouter     shared/data/routing/llmrouter_dcrouter (6,108 prompts x 9 LLMs, own split)
    load_routellm      shared/data/routing/routellm, subset 'mmlu' (task = subject) or 'gsm8k'
    load_routerbench   RouterBench wide table (CSV, or a pickled pandas DataFrame)
    load_long_format   one row per (question, model) in CSV or JSONL, pivoted to wide
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import gzip
import io
import json
import math
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

from prefill_router import paths

from .costs import estimate_input_tokens
from .dataset import UNASSIGNED, RoutingDataset
from .splits import assign_splits

LLMROUTER_DIR = "routing/llmrouter_dcrouter"
ROUTELLM_DIR = "routing/routellm"
ROUTELLM_MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
ROUTELLM_GPT4 = "gpt-4-1106-preview"
# Assumed list prices in $/M tokens (input, output): RouteLLM quotes Mixtral-8x7B at $0.24/M
# (hosted, same price for input and output); GPT-4-1106-preview is OpenAI's list price.
ROUTELLM_PRICES = {ROUTELLM_MIXTRAL: (0.24, 0.24), ROUTELLM_GPT4: (10.0, 30.0)}
MBPP_TESTS_HEADER = "Your code should pass these tests:"
PRICES_FIX = ('give prices: --config.data.prices=prices.json with {"model": [input $/M, output $/M], ...} '
              "(load_routerbench / load_long_format: prices=)")


# --------------------------------------------------------------------------------- file helpers
def _open_text(path: str | os.PathLike):
    """Text stream of a (optionally .gz) UTF-8 file; a leading byte-order mark (Excel's CSV export) is skipped."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _not_utf8(path: str | os.PathLike, err: UnicodeDecodeError) -> ValueError:
    """ValueError naming the first line of ``path`` that is not UTF-8 (e.g. Latin-1 bytes) and the fix."""
    path = pathlib.Path(path)
    data = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    for n, line in enumerate(data.splitlines(), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return ValueError(f"{path} line {n} is not UTF-8 (byte {line[bad.start:bad.start + 1]!r} at column "
                              f"{bad.start + 1}); re-save the file as UTF-8")
    return ValueError(f"{path} is not UTF-8 ({err.reason}); re-save the file as UTF-8")


def _read_json(path: str | os.PathLike) -> Any:
    try:
        with _open_text(path) as f:
            return json.load(f)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None


def _read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    try:
        with _open_text(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{n} is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    return rows


def _read_csv_with_header(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """(header, records) of a CSV file."""
    try:
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None


def _read_csv(path: str | os.PathLike) -> list[dict]:
    return _read_csv_with_header(path)[1]


MISSING_TOKENS = ("", "nan", "na", "n/a", "null", "none")  # cell texts that mean "no value" (case-insensitive)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TOKENS) or (
            isinstance(value, float) and math.isnan(value))


def _parse_score(value: Any, where: str) -> float:
    """A correctness score: bool, number or their strings; NaN when missing (empty, NA, NaN, null, None)."""
    if _is_missing(value):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return float(text == "true")
        value = text
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: cannot read correctness {value!r}; use true/false, 0/1 or a score "
                         "(an empty cell, NA or NaN marks a missing label)")
    if not np.isfinite(score):
        raise ValueError(f"{where}: correctness {value!r} is not finite")
    return score


def _parse_float(value: Any, where: str) -> float:
    if _is_missing(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}")


def _threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """[N, K] labels: 1 where score >= threshold, 0 below, NaN where the score is missing."""
    return np.where(np.isnan(scores), np.nan, (scores >= threshold).astype(np.float32)).astype(np.float32)


def _derive_prices(prompts: Sequence[str], targets: Sequence[str], costs: np.ndarray,
                   output_tokens: np.ndarray | None) -> dict[str, tuple[float, float]]:
    """Blended $/M per target = sum of real costs / sum of (estimated input + output) tokens x 1e6.

    Used when a source has real per-prompt costs but no price list; input and output get the same
    price. Missing output lengths count as 0 tokens.
    """
    n_in = estimate_input_tokens(prompts)
    prices = {}
    for j, target in enumerate(targets):
        known = ~np.isnan(costs[:, j])
        n_out = np.zeros(len(prompts)) if output_tokens is None else np.nan_to_num(output_tokens[:, j])
        tokens = float(np.sum(n_in[known] + n_out[known]))
        if not known.any() or tokens <= 0:
            raise ValueError(f"cannot derive a price for {target!r}: it has no real costs; {PRICES_FIX}")
        blended = float(np.sum(costs[known, j])) / tokens * 1e6
        prices[target] = (blended, blended)
    return prices


def prices_from_rows(ds: RoutingDataset, rows: np.ndarray) -> RoutingDataset:
    """``ds`` with its derived blended prices (meta['prices_derived']) recomputed from ``rows`` alone.

    A router ranks targets by price, so prices derived from realised costs must come from training rows
    only; loaders derive them from every row (the split does not exist yet). Given prices are kept.
    """
    if not ds.meta.get("prices_derived") or ds.costs is None:
        return ds
    rows = np.asarray(rows)
    prices = _derive_prices([ds.prompts[i] for i in rows], ds.targets, ds.costs[rows],
                            None if ds.output_tokens is None else ds.output_tokens[rows])
    return dataclasses.replace(ds, prices=prices, meta={**ds.meta, "prices": ds.meta["prices"]
                                                         + f" (on {len(rows)} training rows)"})


def _response_tokens(response: Any) -> float:
    """Estimated output tokens of a recorded response (2 x words); NaN when missing."""
    if _is_missing(response):
        return math.nan
    return float(estimate_input_tokens([str(response)])[0])


# --------------------------------------------------------------------------------- LLMRouter
def _parse_choices(raw: Any) -> dict | list | None:
    """LLMRouter stores choices as a Python literal string (list, or dict of label/labels + text)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"cannot parse choices {raw[:80]!r}: {err}") from err
    return raw


def render_multiple_choice(question: str, choices: dict | list) -> str:
    """'question\\nA. text\\nB. text...'.

    `choices` is a list of option texts (labelled A, B, C, ...) or a dict {'text': [...],
    'label' | 'labels': [...]} whose own labels are kept (e.g. ARC's '1'..'4').
    """
    if isinstance(choices, Mapping):
        texts = list(choices["text"])
        labels = list(choices.get("label", choices.get("labels", [])))
        if len(labels) != len(texts):
            raise ValueError(f"choices have {len(texts)} texts but labels {labels}")
    else:
        texts = list(choices)
        if len(texts) > 26:
            raise ValueError(f"{len(texts)} options; at most 26 can be lettered")
        labels = [chr(ord("A") + i) for i in range(len(texts))]
    return "\n".join([question] + [f"{lab}. {text}" for lab, text in zip(labels, texts)])


def render_llmrouter_prompt(question: str, metric: str, choices: Any) -> str:
    """The user prompt for one LLMRouter query.

    em_mc (multiple choice: mmlu, gpqa, arc_challenge, commonsense_qa, openbook_qa,
    agentverse-logicgrid): stem + lettered options (`render_multiple_choice`). mbpp (code_eval with a
    list of asserts in `choices`): the task + '\\nYour code should pass these tests:\\n' + one assert
    per line, the standard MBPP prompt. Everything else: the question as is.
    """
    question = question.strip()
    parsed = _parse_choices(choices)
    if parsed is None:
        return question
    if metric == "em_mc":
        return render_multiple_choice(question, parsed)
    if metric == "code_eval" and isinstance(parsed, list):
        return "\n".join([question, MBPP_TESTS_HEADER] + [str(t) for t in parsed])
    raise ValueError(f"unexpected choices for metric {metric!r}: {str(choices)[:80]!r}")


def load_llmrouter(data_dir: str | os.PathLike | None = None, threshold: float = 0.5) -> RoutingDataset:
    """LLMRouter dcrouter set: train.json (5,608 rows) + test.json (500 rows) x 9 targets.

    Each `question.strip()` joins to `query` in default_query_{split}.jsonl for task, metric and
    choices; a query listed twice in that file (8 train cases: an MMLU copy of an ARC/OpenBookQA
    item, or two MBPP items with different tests) takes its first listing (count in
    meta['ambiguous_joins']). Prompts are rendered by `render_llmrouter_prompt`. Labels are
    score >= threshold; prices come from default_llm.json. Split: the dataset's own train/test.
    Targets keep the score-key order of the first train row.
    """
    root = paths.data_dir(data_dir) / LLMROUTER_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found; point --config.data_dir / PREFILL_ROUTER_DATA at shared/data")
    prompts, tasks, split, score_rows = [], [], [], []
    task_metric: dict[str, str] = {}
    ambiguous = 0
    targets: list[str] | None = None
    for part in ("train", "test"):
        rows = _read_json(root / f"{part}.json.gz")
        queries: dict[str, dict] = {}
        for q in _read_jsonl(root / f"default_query_{part}.jsonl.gz"):
            key = q["query"].strip()
            if key in queries:
                ambiguous += 1
            else:
                queries[key] = q
        for n, row in enumerate(rows):
            key = row["question"].strip()
            if key not in queries:
                raise ValueError(f"{part}.json row {n} has no matching query in default_query_{part}: {key[:80]!r}")
            q = queries[key]
            if targets is None:
                targets = list(row["scores"])
            prompts.append(render_llmrouter_prompt(row["question"], q["metric"], q["choices"]))
            tasks.append(q["task_name"])
            task_metric[q["task_name"]] = q["metric"]
            split.append(part)
            score_rows.append(row["scores"])
    assert targets is not None
    extra = sorted({m for s in score_rows for m in s} - set(targets))
    targets += extra
    scores = np.array([[_parse_score(s.get(t), f"{LLMROUTER_DIR} score {t}") for t in targets]
                       for s in score_rows], dtype=np.float32)
    llm_info = _read_json(root / "default_llm.json")
    missing = [t for t in targets if t not in llm_info]
    if missing:
        raise ValueError(f"default_llm.json has no prices for {missing}")
    prices = {t: (float(llm_info[t]["input_price"]), float(llm_info[t]["output_price"])) for t in targets}
    labels = _threshold(scores, threshold)
    logging.info("load_llmrouter: %d prompts x %d targets, %d ambiguous query joins", len(prompts),
                 len(targets), ambiguous)
    return RoutingDataset(
            prompts=prompts, tasks=tasks, targets=targets, labels=labels, mask=~np.isnan(labels),
            split=np.array(split), prices=prices, name="llmrouter", scores=scores,
            meta={"source": "ulab-uiuc/LLMRouter dcrouter_preprocessed", "threshold": threshold,
                  "label_rule": f"score >= {threshold}", "task_metric": task_metric,
                  "ambiguous_joins": ambiguous, "prices": "default_llm.json input/output_price ($/M)",
                  "prompt_rendering": "render_llmrouter_prompt: MC stem + 'A. option' lines; "
                                      "mbpp + test asserts; others raw"})


# --------------------------------------------------------------------------------- RouteLLM
def load_routellm(data_dir: str | os.PathLike | None = None, subset: str = "mmlu") -> RoutingDataset:
    """RouteLLM eval responses: Mixtral-8x7B-Instruct and GPT-4-1106-preview correctness bits.

    subset='mmlu': 57 per-subject CSVs (14,042 prompts; task = subject, prompt already ends in
    the lettered options and 'Answer:'). subset='gsm8k': 1,319 prompts (task 'gsm8k'); output
    tokens are estimated (2 x words) from the recorded responses. Prices are ROUTELLM_PRICES (an
    assumption, recorded in meta). No own split: rows are unassigned.
    """
    root = paths.data_dir(data_dir) / ROUTELLM_DIR
    targets = [ROUTELLM_MIXTRAL, ROUTELLM_GPT4]
    if subset == "mmlu":
        files = sorted((root / "mmlu_responses").glob("mmlu_*.csv.gz"))
        if not files:
            raise FileNotFoundError(f"no mmlu_*.csv.gz under {root / 'mmlu_responses'}; check the data dir")
        sources = [(f, f.name[len("mmlu_"):-len(".csv.gz")]) for f in files]
    elif subset == "gsm8k":
        sources = [(root / "gsm8k_responses.csv.gz", "gsm8k")]
    else:
        raise ValueError(f"subset={subset!r}; use 'mmlu' or 'gsm8k'")
    prompts, tasks, scores, out_tokens = [], [], [], []
    for path, task in sources:
        for n, row in enumerate(_read_csv(path), 2):
            missing = [c for c in ["prompt"] + targets if c not in row]
            if missing:
                raise ValueError(f"{path} lacks columns {missing}")
            prompts.append(row["prompt"])
            tasks.append(task)
            scores.append([_parse_score(row[t], f"{path.name}:{n} {t}") for t in targets])
            out_tokens.append([_response_tokens(row.get(f"{t}_response")) for t in targets])
    scores = np.array(scores, dtype=np.float32)
    labels = _threshold(scores, 0.5)
    output_tokens = np.array(out_tokens, dtype=np.float32)
    has_tokens = bool(np.any(~np.isnan(output_tokens)))
    return RoutingDataset(
            prompts=prompts, tasks=tasks, targets=targets, labels=labels, mask=~np.isnan(labels),
            split=None, prices=dict(ROUTELLM_PRICES), name=f"routellm_{subset}",
            output_tokens=output_tokens if has_tokens else None,
            meta={"source": "lm-sys/RouteLLM routellm/evals", "subset": subset,
                  "prices": "ASSUMPTION: Mixtral-8x7B $0.24/M in+out (RouteLLM's quote); "
                            "GPT-4-1106-preview $10/M in, $30/M out (OpenAI list price)",
                  "output_tokens": "2 x words of the recorded response" if has_tokens else "none"})


# --------------------------------------------------------------------------------- RouterBench
ROUTERBENCH_FIXED = ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")


def _read_table(path: pathlib.Path) -> tuple[list[str], list[dict]]:
    """(columns, records) of a CSV/CSV.gz file or a pickled pandas DataFrame (.pkl/.pickle)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix in (".pkl", ".pickle"):
        try:
            import pandas as pd  # optional: only needed to read RouterBench's pickle
        except ImportError as err:
            raise ImportError(f"reading {path} needs pandas; pip install pandas or convert it to CSV") from err
        frame = pd.read_pickle(path)  # pickles run code: only load files you trust
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{path} holds a {type(frame).__name__}, expected a pandas DataFrame")
        return [str(c) for c in frame.columns], frame.to_dict(orient="records")
    return _read_csv_with_header(path)


def _is_index_column(name: str) -> bool:
    """pandas' index column of a CSV written by DataFrame.to_csv: an empty header or 'Unnamed: <n>'."""
    return name.strip() == "" or name.startswith("Unnamed: ")


def _unwrap_prompt(prompt: Any, where: str) -> str:
    """A prompt as text. RouterBench stores some prompts as a list (or its literal) of turns: joined with newlines."""
    if prompt is None or (isinstance(prompt, float) and math.isnan(prompt)):
        raise ValueError(f"{where}: prompt is missing; remove the row or fill in its prompt")
    if isinstance(prompt, (list, tuple, np.ndarray)) and all(isinstance(p, str) for p in prompt):
        text = "\n".join(prompt)
    elif isinstance(prompt, str):
        text = prompt
        if text.startswith("[") and text.endswith("]"):
            try:
                turns = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                turns = None
            if isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns):
                text = "\n".join(turns)
    else:
        raise ValueError(f"{where}: prompt is {type(prompt).__name__} {str(prompt)[:40]!r}; the prompt column must "
                         "hold text (or a list of text turns)")
    if not text.strip():
        raise ValueError(f"{where}: prompt is empty; remove the row or fill in its prompt")
    return text


def load_routerbench(path: str | os.PathLike, threshold: float = 0.5,
                     prices: Mapping[str, tuple[float, float]] | None = None,
                     name: str = "routerbench") -> RoutingDataset:
    """RouterBench wide table as published: sample_id, prompt, eval_name (task), one correctness column per
    model, '<model>|model_response', '<model>|total_cost', oracle_model_to_route_to; a CSV written by pandas
    (its index column first, empty header or 'Unnamed: 0': ignored) or a pickled DataFrame.

    Prompts: text, or a list (or list literal) of turns joined by newlines. Labels: score >= threshold; empty
    cells are missing (masked). A model whose column holds no label at all is dropped and reported (warning,
    meta['dropped_unlabelled']). costs: the real '<model>|total_cost'. output_tokens: 2 x words of the
    response. prices: given, else blended per-model $/M derived from the real costs (`_derive_prices`,
    recorded in meta). No own split: rows are unassigned.
    """
    path = pathlib.Path(path)
    columns, records = _read_table(path)
    missing = [c for c in ("prompt", "eval_name") if c not in columns]
    if missing:
        raise ValueError(f"{path} lacks RouterBench columns {missing}; found {columns[:10]}")
    targets = [c for c in columns if c not in ROUTERBENCH_FIXED and "|" not in c and not _is_index_column(c)]
    if not targets:
        raise ValueError(f"{path} has no model correctness columns (columns: {columns[:10]})")
    prompts = [_unwrap_prompt(r["prompt"], f"{path.name} row {i}") for i, r in enumerate(records)]
    tasks = [str(r["eval_name"]) for r in records]
    scores = np.array([[_parse_score(r[t], f"{path.name} row {i} {t}") for t in targets]
                       for i, r in enumerate(records)], dtype=np.float32).reshape(len(records), len(targets))
    empty = [t for j, t in enumerate(targets) if np.isnan(scores[:, j]).all()]
    if empty:
        logging.warning("%s: models %s have no result in any row; dropped", path.name, empty)
        keep = [j for j, t in enumerate(targets) if t not in empty]
        targets, scores = [targets[j] for j in keep], scores[:, keep]
        if not targets:
            raise ValueError(f"{path}: no model column holds a single result")
    cost_cols = [f"{t}|total_cost" for t in targets]
    costs = None
    if any(c in columns for c in cost_cols):
        costs = np.array([[_parse_float(r.get(c), f"{path.name} row {i} {c}") for c in cost_cols]
                          for i, r in enumerate(records)], dtype=np.float32).reshape(len(records), -1)
    output_tokens = None
    if any(f"{t}|model_response" in columns for t in targets):
        output_tokens = np.array([[_response_tokens(r.get(f"{t}|model_response")) for t in targets]
                                  for r in records], dtype=np.float32).reshape(len(records), -1)
    price_note = "given"
    if prices is None:
        if costs is None:
            raise ValueError(f"{path} has no '<model>|total_cost' columns to derive prices from; {PRICES_FIX}")
        prices = _derive_prices(prompts, targets, costs, output_tokens)
        price_note = "ASSUMPTION: blended $/M = sum(total_cost) / sum(2 x words of prompt + response)"
    labels = _threshold(scores, threshold)
    return RoutingDataset(
            prompts=prompts, tasks=tasks, targets=targets, labels=labels, mask=~np.isnan(labels),
            split=None, prices=dict(prices), output_tokens=output_tokens, costs=costs, name=name,
            scores=scores, meta={"source": str(path), "threshold": threshold, "prices": price_note,
                                 "prices_derived": price_note != "given", "dropped_unlabelled": empty})


# --------------------------------------------------------------------------------- long format
LONG_REQUIRED = ("question", "model", "is_correct", "output_tokens")


def _read_long_records(path: pathlib.Path) -> list[dict]:
    name = path.name.removesuffix(".gz")
    if name.endswith(".csv"):
        return _read_csv(path)
    if name.endswith(".jsonl"):
        return _read_jsonl(path)
    raise ValueError(f"{path}: unknown format; use .csv or .jsonl (optionally .gz)")


def _per_question(values: dict[str, set], field: str, path: pathlib.Path) -> None:
    bad = {q: sorted(v) for q, v in values.items() if len(v) > 1}
    if bad:
        sample = list(bad.items())[:3]
        raise ValueError(f"{path}: {len(bad)} questions have conflicting {field} values, e.g. {sample}")


def load_long_format(path: str | os.PathLike, prices: Mapping[str, tuple[float, float]] | None = None,
                     name: str | None = None) -> RoutingDataset:
    """One row per (question, model): question, model, is_correct, output_tokens[, cost][, task][, split].

    Pivoted to wide (questions and models in order of first appearance). Missing pairs are masked,
    never 0. Duplicate (question, model) rows: identical labels collapse to the first labelled row
    (a row with an empty is_correct never overrides one); conflicting labels raise, naming them. task and split must agree across a question's rows
    (missing task -> 'default', missing split -> unassigned). prices: given for every model, else
    derived from the cost column (blended; see `_derive_prices`), else an error.
    """
    path = pathlib.Path(path)
    records = _read_long_records(path)
    if not records:
        raise ValueError(f"{path} has no rows")
    missing = [c for c in LONG_REQUIRED if c not in records[0]]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; required: {list(LONG_REQUIRED)}")
    q_index: dict[str, int] = {}
    m_index: dict[str, int] = {}
    cells: dict[tuple[int, int], tuple[float, float, float]] = {}
    conflicts = []
    task_of: dict[str, set] = {}
    split_of: dict[str, set] = {}
    for n, r in enumerate(records, 1):
        where = f"{path.name} row {n}"
        question, model = r.get("question"), r.get("model")
        if _is_missing(question) or _is_missing(model):
            raise ValueError(f"{where}: empty question or model")
        question, model = str(question), str(model)
        label = _parse_score(r["is_correct"], where)
        if not (math.isnan(label) or label in (0.0, 1.0)):
            raise ValueError(f"{where}: is_correct must be 0/1 or true/false (empty, NA or NaN = missing), "
                             f"got {r['is_correct']!r}")
        i = q_index.setdefault(question, len(q_index))
        j = m_index.setdefault(model, len(m_index))
        task_of.setdefault(question, set())
        split_of.setdefault(question, set())
        if not _is_missing(r.get("task")):
            task_of[question].add(str(r["task"]))
        if not _is_missing(r.get("split")):
            split_of[question].add(str(r["split"]).strip())
        cell = (label, _parse_float(r.get("output_tokens"), where), _parse_float(r.get("cost"), where))
        old = cells.get((i, j), (math.nan,))[0]
        if not math.isnan(old):
            if not math.isnan(label) and old != label:
                conflicts.append((question[:60], model))
            continue
        cells[(i, j)] = cell
    if conflicts:
        raise ValueError(f"{path}: {len(conflicts)} (question, model) pairs appear with conflicting "
                         f"is_correct, e.g. {conflicts[:5]}; keep one row per pair")
    _per_question(task_of, "task", path)
    _per_question(split_of, "split", path)
    n, k = len(q_index), len(m_index)
    table = np.full((3, n, k), np.nan, dtype=np.float32)
    for (i, j), cell in cells.items():
        table[:, i, j] = cell
    labels, output_tokens, costs = table
    prompts = list(q_index)
    targets = list(m_index)
    has_costs = bool(np.any(~np.isnan(costs)))
    price_note = "given"
    if prices is None:
        if not has_costs:
            raise ValueError(f"{path} has no cost column to derive prices of {targets} from; {PRICES_FIX}")
        prices = _derive_prices(prompts, targets, costs, output_tokens)
        price_note = "ASSUMPTION: blended $/M = sum(cost) / sum(2 x prompt words + output_tokens)"
    return RoutingDataset(
            prompts=prompts, tasks=[next(iter(task_of[q]), "default") for q in prompts], targets=targets,
            labels=labels, mask=~np.isnan(labels),
            split=[next(iter(split_of[q]), UNASSIGNED) for q in prompts], prices=dict(prices),
            output_tokens=output_tokens if np.any(~np.isnan(output_tokens)) else None,
            costs=costs if has_costs else None, name=name or path.name.split(".")[0],
            meta={"source": str(path), "prices": price_note, "prices_derived": price_note != "given"})


# --------------------------------------------------------------------------------- one-call entry
def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                 test_fraction: float = 0.15, val_fraction: float = 0.0, **kwargs) -> RoutingDataset:
    """Named shared dataset, deduplicated and split (`splits.assign_splits`).

    name: 'llmrouter' (own train/test honoured), 'routellm_mmlu' or 'routellm_gsm8k' (seeded split,
    stratified by task). kwargs go to the loader (e.g. threshold=).
    """
    if name == "llmrouter":
        ds = load_llmrouter(data_dir, **kwargs)
    elif name in ("routellm_mmlu", "routellm_gsm8k"):
        ds = load_routellm(data_dir, subset=name.split("_", 1)[1], **kwargs)
    else:
        raise ValueError(f"unknown dataset {name!r}; use 'llmrouter', 'routellm_mmlu' or 'routellm_gsm8k' "
                         "(or load_routerbench / load_long_format for files)")
    return assign_splits(ds, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
