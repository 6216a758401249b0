"""Generator determinism, answer correctness recomputed per family, option hygiene."""
import datetime
import re

import numpy as np
import pytest

from prefill_router.data import synthetic
from prefill_router.data.synthetic import MCItem, generate_item, generate_items

FAMILIES = [f for f in synthetic.TASK_FAMILIES if f != "mmlu"]
WEEKDAYS = list(synthetic.WEEKDAYS)
ORDINALS = ["first", "second", "third", "fourth"]


def recompute(item: MCItem) -> str:
    """The right answer, recomputed independently from the question text."""
    q = item.question
    if item.task in ("add", "sub", "mul"):
        a, op, b = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", q).groups()
        return str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])
    if item.task == "compare":
        nth, word, nums = re.fullmatch(r"Which number is the (?:(\w+) )?(largest|smallest): (.*)\?", q).groups()
        values = sorted(int(x) for x in nums.split(", "))
        k = ORDINALS.index(nth or "first")
        return str(values[k] if word == "smallest" else values[-1 - k])
    if item.task == "count_letter":
        letter, text = re.fullmatch(r"How many times does the letter '(\w)' appear in '([\w ]+)'\?", q).groups()
        return str(sum(c == letter for c in text))
    if item.task == "count_items":
        return str(len(re.fullmatch(r"How many words are in this list: (.*)\?", q).group(1).split(", ")))
    if item.task == "letter_pos":
        which, word = re.fullmatch(r"What is the ([\w-]+) letter of '(\w+)'\?", q).groups()
        return word[{"first": 0, "second": 1, "third": 2, "last": -1, "second-to-last": -2, "third-to-last": -3}[which]]
    if item.task == "reverse":
        return "".join(reversed(re.fullmatch(r"Spell '(\w+)' backwards\.", q).group(1)))
    if item.task == "alpha_order":
        which, words = re.fullmatch(r"Which word comes (\w+) alphabetically: (.*)\?", q).groups()
        words = sorted(words.split(", "))
        return words[-1] if which == "last" else words[ORDINALS.index(which)]
    if item.task == "weekday":
        day, n = re.fullmatch(r"Today is (\w+)\. What day is it in (\d+) days\?", q).groups()
        monday = datetime.date(2024, 1, 1)  # a Monday
        when = monday + datetime.timedelta(days=WEEKDAYS.index(day) + int(n))
        return when.strftime("%A")
    if item.task == "boolean":
        expr = re.fullmatch(r"What is (.*)\?", q).group(1)
        assert set(re.findall(r"[A-Za-z]+", expr)) <= {"True", "False", "and", "or", "not"}
        return str(eval(expr))  # only boolean literals and operators, checked above
    if item.task == "transitive":
        facts = re.findall(r"(\w+) is (\w+) than (\w+)\.", q)
        ask = re.search(r"Who is (\w+)\?", q).group(1)
        names = {a for a, _, _ in facts} | {b for _, _, b in facts}
        beaten = {b for _, _, b in facts}
        beats = {a for a, _, _ in facts}
        top, bottom = (names - beaten).pop(), (names - beats).pop()
        most = {c[1] for c in synthetic.COMPARATIVES}
        return top if ask in most else bottom
    raise AssertionError(f"no checker for {item.task}")


def test_deterministic_given_seed():
    a = generate_items(200, seed=7)
    b = generate_items(200, seed=7)
    c = generate_items(200, seed=8)
    assert a == b
    assert a != c


@pytest.mark.parametrize("task", FAMILIES)
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_answers_are_right_and_options_unique(task, difficulty):
    rng = np.random.default_rng(difficulty)
    for _ in range(60):
        item = generate_item(task, difficulty, rng)
        assert item.task == task and item.difficulty == difficulty
        assert item.options[item.answer] == recompute(item), item
        assert len(set(item.options)) == len(item.options) >= 2
        assert len(item.question) < 160


def test_mix_controls_tasks_and_questions_are_unique():
    items = generate_items(300, seed=0, mix={"add": 1.0, "weekday": 3.0, "mul": 0.0})
    tasks = [it.task for it in items]
    assert set(tasks) == {"add", "weekday"}
    assert tasks.count("weekday") > tasks.count("add")
    assert len({it.question for it in items}) == 300
    answers = np.bincount([it.answer for it in items if len(it.options) == 4], minlength=4)
    assert answers.min() > 30  # shuffled: the answer is not always in one slot


def test_difficulty_per_task_and_errors():
    items = generate_items(40, seed=1, mix={"add": 1, "sub": 1}, difficulties={"add": [3], "sub": [1]})
    assert {(it.task, it.difficulty) for it in items} == {("add", 3), ("sub", 1)}
    with pytest.raises(ValueError, match="unknown task"):
        generate_items(5, seed=0, mix={"algebra": 1.0})
    with pytest.raises(ValueError, match="difficulty"):
        generate_item("add", 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unique questions"):
        generate_items(500, seed=0, mix={"boolean": 1}, difficulties=[1])
    with pytest.raises(ValueError, match="fewer options"):
        generate_item("weekday", 1, np.random.default_rng(0), n_options=8)
    rng = np.random.default_rng(2)
    for task in FAMILIES:  # other option counts
        for difficulty in (1, 2, 3):
            item = generate_item(task, difficulty, rng, n_options=3)
            assert len(item.options) == synthetic.n_options_of(task, difficulty, 3)
            assert item.options[item.answer] == recompute(item), item
    with pytest.raises(ValueError, match="duplicate options"):
        MCItem("q", ["a", "a"], 0, "t", 1)


def test_mmlu_items(shared_data):
    items = synthetic.load_mmlu_items()
    assert len(items) > 5000
    assert all(len(it.options) == 4 and it.task == "mmlu" for it in items[:100])
    mixed = generate_items(30, seed=0, mix={"mmlu": 1.0, "add": 1.0})
    assert {"mmlu", "add"} == {it.task for it in mixed}


def order_key(task: str, option: str):
    """The order the answer's rank is taken in: numbers by value, weekdays from Monday, False < True, else text."""
    if task in ("add", "sub", "mul", "compare", "count_letter", "count_items"):
        return int(option)
    if task == "weekday":
        return WEEKDAYS.index(option)
    if task == "boolean":
        return ["False", "True"].index(option)
    return option


@pytest.mark.parametrize("task", FAMILIES)
def test_answer_rank_and_position_are_uniform(task):
    """Over 4,500 items per family (1,500 per difficulty) the answer's rank among the options and its
    position are each within 5 points of 1 / n_options, per difficulty and pooled."""
    rng = np.random.default_rng(123)
    pooled = {"rank": [], "position": []}
    for difficulty in (1, 2, 3):
        items = [generate_item(task, difficulty, rng) for _ in range(1500)]
        k = len(items[0].options)
        assert all(len(it.options) == k for it in items)
        ranks = [sum(order_key(task, o) < order_key(task, it.options[it.answer]) for o in it.options) for it in items]
        positions = [it.answer for it in items]
        for name, values in (("rank", ranks), ("position", positions)):
            share = np.bincount(values, minlength=k) / len(values)
            assert np.abs(share - 1 / k).max() < 0.05, (task, difficulty, name, share.round(3))
            pooled[name].append(share)
    for name, shares in pooled.items():
        if task != "transitive":  # transitive has 3 / 4 / 5 options by difficulty
            assert np.abs(np.mean(shares, 0) - 1 / k).max() < 0.05, (task, name)


def test_near_misses_lie_on_both_sides():
    """Arithmetic distractors are near misses below and above the answer: add / sub within +-10 of it
    (nearest) or +-200 (all); mul an operand off by 1..20, the nearest by at most 10."""
    rng = np.random.default_rng(5)
    for task in ("add", "sub", "mul"):
        items = [generate_item(task, 2, rng) for _ in range(300)]
        below = above = 0
        for it in items:
            a, b = (int(x) for x in re.findall(r"\d+", it.question))
            value = int(it.options[it.answer])
            others = [int(o) for i, o in enumerate(it.options) if i != it.answer]
            below += any(o < value for o in others)
            above += any(o > value for o in others)
            if task == "mul":  # o = (a + m) * b or a * (b + m): m = (o - value) / b or / a
                steps = [abs(o - value) // x for o in others for x in (a, b) if (o - value) % x == 0]
                assert len(steps) >= 3 and min(steps) <= 10 and all(
                    any((o - value) % x == 0 and 1 <= abs(o - value) // x <= 20 for x in (a, b)) for o in others), it
            else:
                assert min(abs(o - value) for o in others) <= 10 and max(abs(o - value) for o in others) <= 200, it
        assert below > 200 and above > 200, (task, below, above)


NUMERIC = ("add", "sub", "mul", "compare", "count_letter", "count_items")


def _argmax_credit(scores, answer: int) -> float:
    """1 / |argmax set| when the answer is in it, else 0: a ties-at-random pick's expected hit."""
    scores = np.asarray(scores)
    best = np.flatnonzero(scores == scores.max())
    return float(answer in best) / len(best)


def _position(task: str, option: str) -> int:
    """Where an option lies on its number line: the value, or the alphabet index of a letter."""
    return _ALPHABET.index(option) if task == "letter_pos" else int(option)


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def shape_hits(item: MCItem) -> dict[str, float]:
    """Expected hit of each option-set-only rule on one item (ties at random); 1 / k is chance.

    neighbours: most other options within +-2 (numbers, letters); last_digit: shares its last digit with most
    others; median: the middle option(s) in the rank order; hamming: (reverse) most others differing in <= 2
    letters.
    """
    opts, ans, k = item.options, item.answer, len(item.options)
    ranks = sorted(range(k), key=lambda i: order_key(item.task, opts[i]))
    middle = ranks[(k - 1) // 2:k // 2 + 1]
    out = {"median": float(ans in middle) / len(middle)}
    if item.task in NUMERIC or item.task == "letter_pos":
        pos = [_position(item.task, o) for o in opts]
        out["neighbours"] = _argmax_credit([sum(abs(p - q) <= 2 for q in pos) for p in pos], ans)
    if item.task in NUMERIC:
        out["last_digit"] = _argmax_credit([sum(o[-1] == p[-1] for p in opts) for o in opts], ans)
    if item.task == "reverse":
        out["hamming"] = _argmax_credit(
            [sum(sum(a != b for a, b in zip(o, p)) <= 2 for p in opts) for o in opts], ans)
    return out


def weekday_preference_scores(items) -> np.ndarray:
    """Accuracy of every fixed preference order over the 7 weekdays (pick the most preferred option), (5040,)."""
    import itertools
    orders = np.asarray(list(itertools.permutations(range(7))))  # orders[o] = days, most preferred first
    pref = np.argsort(orders, axis=1)  # pref[o, day] = the day's place in order o
    scores = np.zeros(len(orders))
    for it in items:
        days = np.asarray([WEEKDAYS.index(o) for o in it.options])
        scores += days[np.argmin(pref[:, days], axis=1)] == days[it.answer]
    return scores / len(items)


def family_leaks(task: str, per_family: int = 3000, seed: int = 0) -> dict[str, float]:
    """Mean hit of each option-set-only rule (shape_hits) over per_family items of one family (equal per
    difficulty) and chance; weekday adds the best of the 5,040 fixed day orders in sample, and the order
    chosen on one half scored on the other."""
    rng = np.random.default_rng(seed)
    items = [generate_item(task, d, rng) for d in (1, 2, 3) for _ in range(per_family // 3)]
    hits = [shape_hits(it) for it in items]
    row = {name: float(np.mean([h[name] for h in hits])) for name in hits[0]}
    row["chance"] = float(np.mean([1 / len(it.options) for it in items]))
    if task == "weekday":
        order = rng.permutation(len(items))
        fit = weekday_preference_scores([items[i] for i in order[::2]])
        row["best_weekday_order"] = float(weekday_preference_scores(items).max())
        row["held_out_weekday_order"] = float(weekday_preference_scores([items[i] for i in order[1::2]])[fit.argmax()])
    return row


@pytest.mark.parametrize("task", FAMILIES)
def test_option_shape_does_not_give_the_answer_away(task):
    """Over 3,000 items per family (1,000 per difficulty), no rule that sees only the options picks the answer
    at a rate more than 5 points from chance: the option with most others within +-2, sharing its last digit
    with most others, the median, the Hamming centre (reverse), and any fixed weekday preference order."""
    row = family_leaks(task)
    chance = row.pop("chance")
    assert row and all(abs(rate - chance) < 0.05 for rate in row.values()), (task, chance, row)


if __name__ == "__main__":  # python tests/data/test_data_synthetic.py: the leak table
    for family in FAMILIES:
        row = family_leaks(family)
        print(f"{family:13s}", "  ".join(f"{k}={v:.3f}" for k, v in row.items()))
