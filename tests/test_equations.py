import subprocess
import sys

import numpy as np
import pytest

from lstm_math.components import equations as eq
from lstm_math.components import sampling


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
    here = [sampling.split_of(t, fractions) for t in texts]
    code = ("import sys, json; from lstm_math.components import sampling; "
            "print(json.dumps([sampling.split_of(t, (0.7, 0.1, 0.2)) for t in json.load(sys.stdin)]))")
    import json
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts),
                           capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=".")
    assert json.loads(other.stdout) == here
    share = {s: here.count(s) / len(here) for s in sampling.SPLITS}
    assert abs(share["train"] - 0.7) < 0.03 and abs(share["test"] - 0.2) < 0.03


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 12345])
def test_keyed_permutation_is_a_bijection(n):
    perm = sampling.KeyedPermutation(n, seed=3)
    out = perm.permute(np.arange(n, dtype=np.uint64))
    assert sorted(out.tolist()) == list(range(n))
    assert sampling.KeyedPermutation(n, seed=3).permute(np.arange(n)).tolist() == out.tolist()
    if n > 100:
        assert out.tolist() != list(range(n))
        assert sampling.KeyedPermutation(n, seed=4).permute(np.arange(n)).tolist() != out.tolist()


def test_space_enumerates_every_equation_once_and_never_divides_by_zero():
    space = sampling.EquationSpace(("+", "/"), 0, 9, 2)
    assert space.size == 10 * 10 + 10 * 9
    seen = {space.equation_at(i).text for i in range(space.size)}
    assert len(seen) == space.size
    assert "3 / 0" not in seen and "3 / 1" in seen and "0 + 0" in seen and "9 + 9" in seen
    mixed = sampling.EquationSpace(("+", "*", "/"), 0, 3, 3)
    texts = [mixed.equation_at(i) for i in range(mixed.size)]
    assert len({t.text for t in texts}) == mixed.size
    for t in texts:
        t.result  # never raises: no division by zero in the space



def test_a_space_larger_than_int64_is_counted_and_indexed_exactly():
    # 8 operands of 0..99 over + - * /: 100 * 399**7 equations, more than 2**63
    space = sampling.EquationSpace(("+", "-", "*", "/"), 0, 99, 8)
    assert space.size == 100 * 399**7 > 2**63
    assert space.equation_at(0).text == " + ".join(["0"] * 8)
    last = space.equation_at(space.size - 1)
    assert last.operands == (99,) * 8 and last.operators == ("/",) * 7
    middle = space.equation_at(space.size // 2)
    assert len(middle.operands) == 8 and all(0 <= v <= 99 for v in middle.operands)

def test_max_result_chars_covers_the_space():
    for ops in (("+",), ("-",), ("*",), ("/",), ("+", "-", "*", "/")):
        space = sampling.EquationSpace(ops, 0, 99, 2)
        longest = max(len(str(space.equation_at(i).result)) for i in range(space.size))
        assert eq.max_result_chars(ops, 0, 99, 2) >= longest
    assert eq.max_result_chars(("+",), 0, 999, 2) == 4
    assert eq.max_result_chars(("-",), 0, 999, 2) == 4  # '-999'


# --- vectorized sampling (ExampleGen's hot path) must agree with the reference code -----

@pytest.mark.parametrize("ops,low,high,k", [
    (("+",), 0, 999, 2),
    (("+", "-", "*", "/"), 0, 99, 3),
    (("/",), 0, 9, 2),
    (("*", "+"), 10**20, 10**20 + 30, 3),  # beyond int64: exact Python integers
])
def test_sampler_block_is_equation_at_of_the_permutation(ops, low, high, k):
    space = sampling.EquationSpace(ops, low, high, k)
    n = min(space.size, 3000)
    sampler = sampling.Sampler(space, seed=5, num_examples=n)
    block = sampler.block(0, n)
    reference = list(sampling.sample_block(space, sampling.KeyedPermutation(space.size, 5), 0, n))
    assert block.equations() == reference
    assert block.texts() == [e.text.encode() for e in reference]
    assert [int(r) for r in block.results.tolist()] == [e.result for e in reference]
    # Blocks compose: any cut of [0, n) gives the same equations.
    parts = sampler.block(0, n // 3).texts() + sampler.block(n // 3, n).texts()
    assert parts == block.texts()


def test_evaluate_arrays_matches_evaluate_on_random_mixed_expressions():
    rng = np.random.default_rng(0)
    operands = rng.integers(0, 1000, size=(5000, 4))
    codes = rng.integers(0, 4, size=(5000, 3))
    operands[:, 1:][codes == 3] = np.maximum(operands[:, 1:][codes == 3], 1)
    got = sampling.evaluate_arrays(operands, codes)
    want = [eq.evaluate(row, [eq.OPERATORS[c] for c in ops])
            for row, ops in zip(operands.tolist(), codes.tolist())]
    assert got.tolist() == want
    big = operands.astype(object) * 10**15
    assert sampling.evaluate_arrays(big, codes).tolist() == [
        eq.evaluate(row, [eq.OPERATORS[c] for c in ops])
        for row, ops in zip(big.tolist(), codes.tolist())]
    with pytest.raises(eq.EquationError, match="division by zero"):
        sampling.evaluate_arrays(np.array([[4, 0]]), np.array([[3]]))


def test_split_indices_matches_split_of():
    texts = [eq.canonical_text((a, b), ("-",)) for a in range(150) for b in range(150)]
    fractions = (0.6, 0.25, 0.15)
    got = sampling.split_indices([t.encode() for t in texts], fractions)
    assert [sampling.SPLITS[i] for i in got] == [sampling.split_of(t, fractions) for t in texts]


def test_every_single_digit_equation_trains_and_the_rest_split_by_hash():
    # What the quickstart user types first is never left for the model to guess: every
    # equation whose operands are all single-digit is in the training split, in every space.
    space = sampling.EquationSpace(tuple(eq.OPERATORS), 0, 19, 3, 2)
    texts = [space.equation_at(i).text for i in range(space.size)]
    fractions = (0.7, 0.1, 0.2)
    splits = [sampling.SPLITS[i] for i in sampling.split_indices(
        [t.encode() for t in texts], fractions)]
    assert splits == [sampling.split_of(t, fractions) for t in texts]
    single = [s for t, s in zip(texts, splits) if max(map(int, t.split(" ")[::2])) < 10]
    # two operands: 3 x 100 + 90 ('/' never by 0); three: 9 x 1000 + 6 x 900 + 810
    assert len(single) == 390 + 15_210 and set(single) == {"train"}
    # the others keep the hash's split: all three splits, in about the given shares
    rest = [s for t, s in zip(texts, splits) if max(map(int, t.split(" ")[::2])) >= 10]
    shares = [rest.count(name) / len(rest) for name in sampling.SPLITS]
    assert all(abs(got - want) < 0.005 for got, want in zip(shares, fractions)), shares
    assert sampling.split_of("10 / 2", fractions) == sampling.SPLITS[int(np.searchsorted(
        np.cumsum(fractions), sampling.stable_hash64("10 / 2") / 2.0**64, side="right"))]


def test_exhaustive_sample_is_the_whole_space_including_equal_operands():
    space = sampling.EquationSpace(("+", "/"), 0, 20, 2)
    sampler = sampling.Sampler(space, seed=1, num_examples=5, exhaustive=True)
    assert sampler.count == space.size == 21 * 21 + 21 * 20
    texts = sampler.block(0, sampler.count).texts()
    assert len(set(texts)) == space.size
    assert {b"7 + 7", b"0 + 0", b"20 / 20", b"0 / 1"} <= set(texts)
    assert b"3 / 0" not in set(texts)


def test_stratified_sampling_takes_small_digit_lengths_whole_and_stays_unique():
    space = sampling.EquationSpace(("+",), 0, 999, 2)
    n = 30_000
    stratified = sampling.Sampler(space, seed=3, num_examples=n, sampling="stratified")
    uniform = sampling.Sampler(space, seed=3, num_examples=n)
    strata = stratified.strata()
    assert len(strata) == 9 and sum(s["draws"] for s in strata) == n
    assert all(s["draws"] == s["size"] for s in strata if s["size"] < n // 9)
    block = stratified.block(0, n)
    texts = block.texts()
    assert len(set(texts)) == n
    one_digit_pairs = {b"%d + %d" % (a, b) for a in range(10) for b in range(10)}
    assert one_digit_pairs <= set(texts)  # the 1x1 stratum is taken whole

    def small_share(b):
        return float(np.mean((b.operands < 100).any(axis=1)))
    assert small_share(block) > 3 * small_share(uniform.block(0, n))
    # Every position of the sample is a valid equation with the right result.
    for text, result in zip(texts[:500], block.results[:500].tolist()):
        assert eq.parse(text.decode()).result == result
    # Deterministic, and blocks compose.
    again = sampling.Sampler(space, seed=3, num_examples=n, sampling="stratified")
    assert again.block(1000, 2000).texts() == texts[1000:2000]


# --- mixed operand counts in one space (task.data.min_operands) -------------------------

def test_space_with_two_to_three_operands_holds_both_counts_once():
    both = sampling.EquationSpace(("+", "-", "*", "/"), 0, 12, 3, min_operands=2)
    two = sampling.EquationSpace(("+", "-", "*", "/"), 0, 12, 2)
    three = sampling.EquationSpace(("+", "-", "*", "/"), 0, 12, 3)
    assert both.size == two.size + three.size
    texts = [both.equation_at(i).text for i in range(both.size)]
    assert len(set(texts)) == both.size
    assert set(texts) == {two.equation_at(i).text for i in range(two.size)} | {
        three.equation_at(i).text for i in range(three.size)}
    assert list(both.operand_counts) == [2, 3] and list(three.operand_counts) == [3]
    # one model's answer field must hold the longest result of any count
    assert eq.max_result_chars(["-"], 0, 999, 3, 2) == 5  # '0 - 999 - 999'
    assert eq.max_result_chars(["*"], 0, 999, 3, 2) == 9


@pytest.mark.parametrize("scheme", ["uniform", "stratified"])
def test_sampler_mixes_operand_counts_without_padding_leaking(scheme):
    space = sampling.EquationSpace(("+", "-", "*", "/"), 0, 99, 3, min_operands=2)
    n = 4000
    sampler = sampling.Sampler(space, seed=11, num_examples=n, sampling=scheme)
    block = sampler.block(0, n)
    texts = block.texts()
    assert len(set(texts)) == n
    counts = block.operand_counts().tolist()
    for text, e, result, tag, digits, k in zip(texts, block.equations(), block.results.tolist(),
                                               block.tags(), block.operand_digits().tolist(),
                                               counts):
        parsed = eq.parse(text.decode())
        assert parsed == e and len(e.operands) == k
        assert parsed.result == result  # integer arithmetic on the padded arrays
        assert tag.decode() == parsed.tag
        assert [d for d in digits if d] == [len(str(v)) for v in e.operands]
    assert set(counts) == {2, 3}
    if scheme == "uniform":  # the same as equation_at of the permutation
        reference = list(sampling.sample_block(space, sampling.KeyedPermutation(space.size, 11), 0, n))
        assert block.equations() == reference
    else:  # every (combination, digit lengths) stratum of both counts is drawn from
        strata = sampler.strata()
        assert {len(s["operators"]) for s in strata} == {1, 2}
        assert sum(s["draws"] for s in strata) == n
        # half the draws for each operand count (then equally over its strata): two
        # operands are 16 of the 144 strata and 1/400 of the space
        assert counts.count(2) == sum(s["draws"] for s in strata if len(s["operators"]) == 1)
        assert counts.count(2) == n // 2
        two = [s["draws"] for s in strata if len(s["operators"]) == 1]
        assert max(two) - min(two) <= 1 or min(two) == min(
            s["size"] for s in strata if len(s["operators"]) == 1)
    assert sampler.block(0, n // 3).texts() + sampler.block(n // 3, n).texts() == texts


def test_exhaustive_mixed_counts_is_the_whole_space():
    space = sampling.EquationSpace(("+", "/"), 0, 9, 3, min_operands=2)
    sampler = sampling.Sampler(space, seed=1, num_examples=5, exhaustive=True)
    texts = sampler.block(0, sampler.count).texts()
    assert len(set(texts)) == space.size == 10 * 10 + 10 * 9 + (10 * 10 * 10 + 2 * 10 * 10 * 9
                                                              + 10 * 9 * 9)
    assert {b"9 / 1", b"9 + 9 + 9", b"0 / 1 / 1"} <= set(texts)


def test_operator_tags_are_the_slices_a_space_holds():
    space = sampling.EquationSpace(("/", "+"), 0, 99, 3, 2)
    assert space.operator_tags == ("+", "/", "mixed")  # OPERATOR_TAGS order
    assert sampling.EquationSpace(("+", "*"), 0, 99, 3).operator_tags == ("mixed",)  # no two-operand
    assert sampling.EquationSpace(("-",), 0, 99).operator_tags == ("-",)
    # every tag the sampled equations carry is one the space names
    tags = {e.tag for e in (space.equation_at(i) for i in range(0, space.size, 997))}
    assert tags == set(space.operator_tags)
