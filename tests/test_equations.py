import subprocess
import sys

import numpy as np
import pytest

from components import equations as eq


@pytest.mark.parametrize("text,value", [
    ("31 + 87", 118),
    ("3 - 5", -2),
    ("7 / 2", 3),
    ("0 / 5", 0),
    ("12 * 12", 144),
    ("131 + 83 - 744 * 33", -24338),
    ("100 - 10 - 1", 89),        # left to right
    ("100 / 10 / 3", 3),         # left to right, floor at each step
    ("2 + 3 * 4 - 10 / 3", 11),  # * and / first
    ("999 * 999 * 999", 997002999),
])
def test_evaluate_uses_precedence_and_floor_division(text, value):
    assert eq.parse(text).result == value


def test_whitespace_insensitive_and_canonical():
    for text in ("31+87", " 31  + 87 ", "31 +87", "\t31\n+87"):
        e = eq.parse(text)
        assert e.text == "31 + 87"
        assert e.result == 118


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("31 +", "ends with an operator"),
    ("+ 31", "where a number was expected"),
    ("3 1 + 2", "two numbers"),
    ("31 x 2", "unknown character"),
    ("31", "no operator"),
    ("5 / 0", "division by zero"),
    ("__import__('os')", "unknown character"),
])
def test_bad_equations_raise_with_reason(text, reason):
    with pytest.raises(eq.EquationError, match=reason):
        eq.parse(text).result


def test_huge_operands_use_exact_integer_arithmetic():
    a, b = 10**30 + 7, 10**29 + 3
    assert eq.parse(f"{a} * {b}").result == a * b


def test_split_is_stable_across_processes_and_partitions_by_fraction():
    texts = [eq.canonical_text((a, b), ("+",)) for a in range(60) for b in range(60)]
    fractions = (0.7, 0.1, 0.2)
    here = [eq.split_of(t, fractions) for t in texts]
    code = ("import sys, json; from components import equations as eq; "
            "print(json.dumps([eq.split_of(t, (0.7, 0.1, 0.2)) for t in json.load(sys.stdin)]))")
    import json
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts),
                           capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=".")
    assert json.loads(other.stdout) == here
    share = {s: here.count(s) / len(here) for s in eq.SPLITS}
    assert abs(share["train"] - 0.7) < 0.03 and abs(share["test"] - 0.2) < 0.03


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 12345])
def test_keyed_permutation_is_a_bijection(n):
    perm = eq.KeyedPermutation(n, seed=3)
    out = perm.permute(np.arange(n, dtype=np.uint64))
    assert sorted(out.tolist()) == list(range(n))
    assert eq.KeyedPermutation(n, seed=3).permute(np.arange(n)).tolist() == out.tolist()
    if n > 100:
        assert out.tolist() != list(range(n))
        assert eq.KeyedPermutation(n, seed=4).permute(np.arange(n)).tolist() != out.tolist()


def test_space_enumerates_every_equation_once_and_never_divides_by_zero():
    space = eq.EquationSpace(("+", "/"), 0, 9, 2)
    assert space.size == 10 * 10 + 10 * 9
    seen = {space.equation_at(i).text for i in range(space.size)}
    assert len(seen) == space.size
    assert "3 / 0" not in seen and "3 / 1" in seen and "0 + 0" in seen and "9 + 9" in seen
    mixed = eq.EquationSpace(("+", "*", "/"), 0, 3, 3)
    texts = [mixed.equation_at(i) for i in range(mixed.size)]
    assert len({t.text for t in texts}) == mixed.size
    for t in texts:
        t.result  # never raises: no division by zero in the space


def test_max_result_chars_covers_the_space():
    for ops in (("+",), ("-",), ("*",), ("/",), ("+", "-", "*", "/")):
        space = eq.EquationSpace(ops, 0, 99, 2)
        longest = max(len(str(space.equation_at(i).result)) for i in range(space.size))
        assert eq.max_result_chars(ops, 0, 99, 2) >= longest
    assert eq.max_result_chars(("+",), 0, 999, 2) == 4
    assert eq.max_result_chars(("-",), 0, 999, 2) == 4  # '-999'
