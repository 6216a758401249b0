"""Generator determinism, answer correctness recomputed per family, option hygiene."""
import datetime
import re

import numpy as np
import pytest

from prefill_router.data import synthetic
from prefill_router.data.synthetic import MCItem, generate_item, generate_items

FAMILIES = [f for f in synthetic.TASK_FAMILIES if f != "mmlu"]
WEEKDAYS = list(synthetic.WEEKDAYS)


def recompute(item: MCItem) -> str:
    """The right answer, recomputed independently from the question text."""
    q = item.question
    if item.task in ("add", "sub", "mul"):
        a, op, b = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", q).groups()
        return str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])
    if item.task == "compare":
        word, nums = re.fullmatch(r"Which number is the (largest|smallest): (.*)\?", q).groups()
        values = [int(x) for x in nums.split(", ")]
        return str(max(values) if word == "largest" else min(values))
    if item.task == "count_letter":
        letter, word = re.fullmatch(r"How many times does the letter '(\w)' appear in '(\w+)'\?", q).groups()
        return str(sum(c == letter for c in word))
    if item.task == "count_items":
        return str(len(re.fullmatch(r"How many words are in this list: (.*)\?", q).group(1).split(", ")))
    if item.task == "letter_pos":
        which, word = re.fullmatch(r"What is the ([\w-]+) letter of '(\w+)'\?", q).groups()
        return word[{"first": 0, "last": -1, "second-to-last": -2}[which]]
    if item.task == "reverse":
        return "".join(reversed(re.fullmatch(r"Spell '(\w+)' backwards\.", q).group(1)))
    if item.task == "alpha_order":
        return sorted(re.fullmatch(r"Which word comes first alphabetically: (.*)\?", q).group(1).split(", "))[0]
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
    with pytest.raises(ValueError, match="duplicate options"):
        MCItem("q", ["a", "a"], 0, "t", 1)


def test_mmlu_items(shared_data):
    items = synthetic.load_mmlu_items()
    assert len(items) > 5000
    assert all(len(it.options) == 4 and it.task == "mmlu" for it in items[:100])
    mixed = generate_items(30, seed=0, mix={"mmlu": 1.0, "add": 1.0})
    assert {"mmlu", "add"} == {it.task for it in mixed}
