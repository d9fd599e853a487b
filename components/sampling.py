"""Which equations a data set holds: the equation space, a seeded bijection of it, the
stable split of an equation, and vectorized sampling of whole blocks (ExampleGen's hot path).

Pure Python and numpy; no TensorFlow. Everything here is deterministic: the same
arguments give the same equations on any machine, runner or worker count. The grammar
and integer evaluation of one equation are ``lstm_math.components.equations``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from typing import Iterator, Sequence

import numpy as np

from lstm_math.components.equations import (MIXED_TAG, OPERATOR_TAGS, OPERATORS, Equation,
                                            EquationError, result_bounds)

SPLITS = ("train", "validation", "test")


def stable_hash64(text: str) -> int:
    """A 64-bit hash of text that is the same in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


# Equations whose operands are all single-digit ('1 + 9', '7 * 3 - 2') always go to the
# training split. They are what a person types first and a sliver of any space (100 of the
# 10^6 sums); held out by the hash, a third of them were left for the model to guess from
# longer neighbours, and some runs guessed wrong ('9 / 2' = 7 from a division model whose
# other 998,900 quotients were 99.8% right). The Evaluator checks every one of them.
_TWO_DIGITS = re.compile(r"[0-9][0-9]")
_TWO_DIGITS_BYTES = re.compile(rb"[0-9][0-9]")


def always_trains(text: str) -> bool:
    """True for an equation whose operands are all single-digit (it is never held out)."""
    return _TWO_DIGITS.search(text) is None


def split_of(text: str, fractions: Sequence[float], salt: str = "") -> str:
    """The split ('train', 'validation', 'test') of a canonical equation text.

    A pure function of the text (and the salt): no equation can land in two splits,
    whatever the runner, worker count or sharding. Single-digit equations train
    (``always_trains``); the others go by a stable hash, in the given fractions.
    """
    if always_trains(text):
        return SPLITS[0]
    u = stable_hash64(salt + text) / 2.0**64
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions):
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1]


# --------------------------------------------------------------------------------------
# The equation space and a keyed permutation of it, so that workers draw unique equations
# by construction (block i of the permutation), never by deduplicating through a shuffle.


@dataclasses.dataclass(frozen=True)
class EquationSpace:
    """All equations with ``min_operands``..``num_operands`` operands in [low, high] and the
    given operators (``min_operands`` None: exactly ``num_operands``).

    Indexed by a mixed radix: first the operator combination (all combinations of the fewest
    operands first, then of one more, ...), then each operand. An operand right after '/'
    ranges over [max(low, 1), high], so division by zero is never in the space.
    """

    operators: tuple[str, ...]
    low: int
    high: int
    num_operands: int = 2
    min_operands: int | None = None

    @property
    def operand_counts(self) -> range:
        """The operand counts of the space, fewest first."""
        fewest = self.num_operands if self.min_operands is None else self.min_operands
        return range(fewest, self.num_operands + 1)

    @property
    def operator_tags(self) -> tuple[str, ...]:
        """The ``operator_tag`` slices its equations fall in, in ``OPERATOR_TAGS`` order."""
        held = set(self.operators) if 2 in self.operand_counts else set()
        if self.num_operands >= 3:
            held.add(MIXED_TAG)
        return tuple(tag for tag in OPERATOR_TAGS if tag in held)

    def __post_init__(self):
        combos = [combo for k in self.operand_counts
                  for combo in itertools.product(self.operators, repeat=k - 1)]
        sizes = []
        radices = []
        for combo in combos:
            r = [self.high - self.low + 1]
            for op in combo:
                lo = max(self.low, 1) if op == "/" else self.low
                r.append(self.high - lo + 1)
            radices.append(r)
            sizes.append(int(np.prod(np.array(r, dtype=object))))
        object.__setattr__(self, "_combos", combos)
        object.__setattr__(self, "_radices", radices)
        # exact for any size (Python ints); int64, the faster search, where the space fits
        offsets = np.cumsum(np.array([0] + sizes, dtype=object))
        if offsets[-1] < 2**63:
            offsets = offsets.astype(np.int64)
        object.__setattr__(self, "_offsets", offsets)

    @property
    def size(self) -> int:
        return int(self._offsets[-1])

    def equation_at(self, index: int) -> Equation:
        combo_id = int(np.searchsorted(self._offsets, index, side="right") - 1)
        rest = int(index - self._offsets[combo_id])
        combo = self._combos[combo_id]
        operands = []
        for position, radix in enumerate(self._radices[combo_id]):
            digit = rest % radix
            rest //= radix
            lo = self.low
            if position > 0 and combo[position - 1] == "/":
                lo = max(self.low, 1)
            operands.append(lo + digit)
        return Equation(tuple(operands), tuple(combo))


_MASK64 = (1 << 64) - 1


class KeyedPermutation:
    """A bijection of [0, n) keyed by a seed: a Feistel network with cycle walking.

    ``permute(np.arange(a, b))`` gives block [a, b) of a pseudo-random ordering of the
    whole space without materialising it; distinct inputs give distinct outputs.
    """

    ROUNDS = 4

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("permutation domain must be non-empty")
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        self.keys = [
            stable_hash64(f"lstm-math-perm:{seed}:{r}") & 0xFFFFFFFF for r in range(self.ROUNDS)
        ]

    def _round(self, x: np.ndarray, key: int) -> np.ndarray:
        h = (x * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(key)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
        return h & np.uint64(self.mask)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left = x >> np.uint64(self.half)
        right = x & np.uint64(self.mask)
        for key in self.keys:
            left, right = right, left ^ self._round(right, key)
        return (left << np.uint64(self.half)) | right

    def permute(self, indices: np.ndarray) -> np.ndarray:
        x = np.asarray(indices, dtype=np.uint64)
        with np.errstate(over="ignore"):
            y = self._encrypt(x)
            out_of_range = y >= np.uint64(self.n)
            while out_of_range.any():
                y[out_of_range] = self._encrypt(y[out_of_range])
                out_of_range = y >= np.uint64(self.n)
        return y


def sample_block(
    space: EquationSpace, permutation: KeyedPermutation, start: int, stop: int
) -> Iterator[Equation]:
    """Equations at positions [start, stop) of the keyed permutation of the space."""
    for index in permutation.permute(np.arange(start, stop, dtype=np.uint64)):
        yield space.equation_at(int(index))


# --------------------------------------------------------------------------------------
# Vectorized sampling: a whole block of positions -> operands, results, texts at once.
# ExampleGen's hot path; ``Sampler.block(start, stop)`` gives exactly the equations that
# ``space.equation_at(permutation.permute(position))`` gives one by one (uniform sampling).

SAMPLING_SCHEMES = ("uniform", "stratified")
MAX_EXHAUSTIVE = 10**10  # equations; enumerating more is a typo, not a data set
_OP_CODES = {op: i for i, op in enumerate(OPERATORS)}
_INT64_SAFE = 1 << 62


def _digit_intervals(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] cut into runs of operands with the same number of decimal digits."""
    out = []
    for d in range(len(str(lo)), len(str(hi)) + 1):
        a = max(lo, 0 if d == 1 else 10 ** (d - 1))
        b = min(hi, 10**d - 1)
        if a <= b:
            out.append((a, b))
    return out


def _allocate_equally(sizes: Sequence[int], total: int) -> list[int]:
    """Splits ``total`` draws over strata as equally as their sizes allow (water filling)."""
    alloc = [0] * len(sizes)
    remaining, left = total, len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    for pos, i in enumerate(order):
        share = remaining // left
        if sizes[i] <= share:
            alloc[i] = sizes[i]
            remaining -= sizes[i]
            left -= 1
            continue
        # Every stratum from here on is larger than the equal share: split what is left.
        rest = sorted(order[pos:])
        for k, j in enumerate(rest):
            alloc[j] = remaining // left + (1 if k < remaining % left else 0)
        break
    return alloc


@dataclasses.dataclass
class Block:
    """Equations of one block, column-wise. ``operands`` is int64 where safe, else object.

    Rows with fewer operands than the widest (``counts``) are padded with ``+ 0``: the
    operands with 0, the operator codes with '+', so ``results`` (and ``evaluate_arrays``
    on the padded arrays) are unchanged; ``texts``, ``equations``, ``tags`` and
    ``operand_digits`` leave the padding out.
    """

    operands: np.ndarray  # [n, max operands]
    op_codes: np.ndarray  # [n, max operands - 1] indices into OPERATORS
    results: np.ndarray  # [n]
    counts: np.ndarray | None = None  # [n] operands per row; None: every row is full width

    def __len__(self) -> int:
        return len(self.results)

    def operand_counts(self) -> np.ndarray:
        if self.counts is None:
            return np.full(len(self.results), self.operands.shape[1], np.int64)
        return self.counts

    def texts(self) -> list[bytes]:
        """Canonical texts as bytes, e.g. b'31 + 87'."""
        seps = np.array([f" {op} ".encode() for op in OPERATORS], dtype=object)
        cols = [np.array(int_bytes(self.operands[:, j]), dtype=object)
                for j in range(self.operands.shape[1])]
        counts = self.operand_counts()
        out = cols[0]
        for j in range(1, len(cols)):
            longer = out + seps[self.op_codes[:, j - 1]] + cols[j]
            out = longer if self.counts is None else np.where(counts > j, longer, out)
        return out.tolist()

    def equations(self) -> list[Equation]:
        return [Equation(tuple(int(v) for v in row[:k]), tuple(OPERATORS[c] for c in ops[:k - 1]))
                for row, ops, k in zip(self.operands.tolist(), self.op_codes.tolist(),
                                       self.operand_counts().tolist())]

    def tags(self) -> list[bytes]:
        """``operator_tag`` of every row: the operator for two operands, b'mixed' otherwise."""
        names = np.array([tag.encode() for tag in OPERATOR_TAGS], dtype=object)
        if self.op_codes.shape[1] == 0:
            return [MIXED_TAG.encode()] * len(self)
        ids = np.where(self.operand_counts() == 2, self.op_codes[:, 0], len(OPERATORS))
        return names[ids].tolist()

    def operand_digits(self) -> np.ndarray:
        """[n, max operands] decimal digits of each operand; 0 for padding."""
        counts = self.operand_counts()
        return np.stack([
            np.where(counts > j, np.fromiter(map(len, int_bytes(self.operands[:, j])),
                                             np.int64, len(self)), 0)
            for j in range(self.operands.shape[1])], axis=1)


def int_bytes(values: np.ndarray) -> list[bytes]:
    """The decimal text of each integer, as bytes (b'31')."""
    return list(map(b"%d".__mod__, values.tolist()))


def evaluate_arrays(operands: np.ndarray, op_codes: np.ndarray) -> np.ndarray:
    """``evaluate`` for a whole block: [n, k] operands, [n, k-1] operator codes -> [n].

    Same precedence and floor division as ``evaluate``; works on int64 (when the caller
    knows nothing overflows) and on object arrays of Python ints (exact, any size).
    Division by zero raises EquationError.
    """
    n = operands.shape[0]
    total = np.zeros(n, dtype=operands.dtype)
    sign = np.ones(n, dtype=operands.dtype)
    term = operands[:, 0].copy()
    one = np.ones(n, dtype=operands.dtype)
    for j in range(1, operands.shape[1]):
        value = operands[:, j]
        code = op_codes[:, j - 1]
        is_mul = code == _OP_CODES["*"]
        is_div = code == _OP_CODES["/"]
        is_add = code == _OP_CODES["+"]
        additive = ~(is_mul | is_div)
        if np.any(is_div & (value == 0)):
            raise EquationError("division by zero")
        with np.errstate(over="ignore"):
            folded = np.where(is_mul, term * value, term // np.where(is_div, value, one))
        total = np.where(additive, total + sign * term, total)
        sign = np.where(additive, np.where(is_add, one, -one), sign)
        term = np.where(additive, value, folded)
    return total + sign * term


class Sampler:
    """Positions [0, count) of a config's sample -> equations, a whole block at a time.

    * ``uniform``: position p is ``space.equation_at(P(p))`` for a seeded bijection P of the
      whole space (``exhaustive`` takes every position, i.e. the whole space).
    * ``stratified``: the space is cut into strata by operator combination and the digit
      length of every operand; the draws are shared as equally as the strata sizes allow
      (small strata are taken whole; with several operand counts, equally over the counts
      first, then over the strata of each), a seeded bijection of [0, count) interleaves the
      strata, and a seeded bijection per stratum picks its equations.

    Unique by construction in both schemes: no shuffle, no deduplication, no state.
    """

    def __init__(self, space: EquationSpace, seed: int, num_examples: int,
                 exhaustive: bool = False, sampling: str = "uniform"):
        if sampling not in SAMPLING_SCHEMES:
            raise ValueError(f"unknown sampling {sampling!r}; use {', '.join(SAMPLING_SCHEMES)}")
        self.space = space
        self.seed = seed
        self.sampling = "uniform" if exhaustive else sampling
        self.count = space.size if exhaustive else min(int(num_examples), space.size)
        k = space.num_operands
        lo_hi = (0, 0)
        for count in space.operand_counts:
            b = result_bounds(tuple(space.operators), space.low, space.high, count)
            lo_hi = (min(lo_hi[0], b[0]), max(lo_hi[1], b[1]))
        self.exact_int64 = max(abs(lo_hi[0]), abs(lo_hi[1]), space.high) < _INT64_SAFE
        self.dtype = np.int64 if self.exact_int64 else object
        combos = space._combos
        # Shorter combinations are padded to k - 1 operators with '+' (and their operands
        # with 0, radix 1): '+ 0' leaves every result as it is (see Block).
        self.combo_codes = np.array(
            [[_OP_CODES[o] for o in c] + [_OP_CODES["+"]] * (k - 1 - len(c)) for c in combos],
            dtype=np.int64).reshape(len(combos), k - 1)
        self.combo_counts = np.array([len(c) + 1 for c in combos], dtype=np.int64)

        def padded(ci, los, radices):
            pad = k - len(los)
            return (ci, list(los) + [0] * pad, list(radices) + [1] * pad)

        if self.sampling == "uniform":
            strata = []
            for ci, radices in enumerate(space._radices):
                los = [space.low] + [max(space.low, 1) if op == "/" else space.low
                                     for op in combos[ci]]
                strata.append(padded(ci, los, radices))
            sizes = [int(np.prod(np.array(r, dtype=object))) for _, _, r in strata]
            alloc = sizes
        else:
            # Strata: (operator combination, digit length of every operand); with several
            # operand counts the combinations of each count are strata of their own.
            strata = []
            for ci, combo in enumerate(combos):
                per_position = [_digit_intervals(space.low, space.high)]
                for op in combo:
                    lo = max(space.low, 1) if op == "/" else space.low
                    per_position.append(_digit_intervals(lo, space.high))
                for choice in itertools.product(*per_position):
                    strata.append(padded(ci, [a for a, _ in choice],
                                         [b - a + 1 for a, b in choice]))
            sizes = [int(np.prod(np.array(r, dtype=object))) for _, _, r in strata]
            # Several operand counts: the draws are first shared equally over the counts
            # (as their sizes allow), then over the strata of each count. Stratum by stratum
            # alone, 0..999 with 2..3 operands would give the 36 two-operand strata (of 468)
            # 8% of the draws.
            count_of = [len(combos[ci]) + 1 for ci, _, _ in strata]
            counts = list(space.operand_counts)
            per_count = _allocate_equally(
                [sum(z for z, c in zip(sizes, count_of) if c == k) for k in counts], self.count)
            alloc = [0] * len(strata)
            for k, share in zip(counts, per_count):
                mine = [i for i, c in enumerate(count_of) if c == k]
                for i, a in zip(mine, _allocate_equally([sizes[i] for i in mine], share)):
                    alloc[i] = a
        self.strata_sizes = sizes
        self.strata_alloc = alloc
        self.strata_combo = np.array([s[0] for s in strata], dtype=np.int64)
        self.strata_low = np.array([s[1] for s in strata], dtype=object)
        self.strata_radix = np.array([s[2] for s in strata], dtype=object)
        if self.exact_int64:
            self.strata_low = self.strata_low.astype(np.int64)
            self.strata_radix = self.strata_radix.astype(np.uint64)
        self.cum = np.cumsum([0] + alloc).astype(np.uint64)
        domain = space.size if self.sampling == "uniform" else self.count
        self.permutation = KeyedPermutation(domain, seed)
        self._stratum_perms: dict[int, KeyedPermutation] = {}

    def strata(self) -> list[dict]:
        """Each stratum: operators, operand digit lengths, size and number of draws."""
        out = []
        for s in range(len(self.strata_sizes)):
            ci = self.strata_combo[s]
            ops = [OPERATORS[c] for c in self.combo_codes[ci][:self.combo_counts[ci] - 1]]
            lows = [int(v) for v in self.strata_low[s][:self.combo_counts[ci]]]
            out.append({"operators": ops, "operand_digits": [len(str(v)) for v in lows],
                        "size": self.strata_sizes[s], "draws": self.strata_alloc[s]})
        return out

    def _stratum_permutation(self, s: int) -> KeyedPermutation:
        if s not in self._stratum_perms:
            self._stratum_perms[s] = KeyedPermutation(self.strata_sizes[s],
                                                      stable_hash64(f"{self.seed}:stratum:{s}"))
        return self._stratum_perms[s]

    def block(self, start: int, stop: int) -> Block:
        """Equations at positions [start, stop) of the sample."""
        if not 0 <= start <= stop <= self.count:
            raise ValueError(f"block [{start}, {stop}) outside the sample [0, {self.count})")
        q = self.permutation.permute(np.arange(start, stop, dtype=np.uint64))
        stratum = np.searchsorted(self.cum, q, side="right").astype(np.int64) - 1
        local = q - self.cum[stratum]
        if self.sampling == "stratified":
            for s in np.unique(stratum).tolist():
                mask = stratum == s
                local[mask] = self._stratum_permutation(s).permute(local[mask])
        k = self.space.num_operands
        n = stop - start
        operands = np.empty((n, k), dtype=self.dtype)
        if self.exact_int64:
            rest = local
            for j in range(k):
                radix = self.strata_radix[stratum, j]
                operands[:, j] = self.strata_low[stratum, j] + (rest % radix).astype(np.int64)
                rest = rest // radix
        else:
            rest = np.array([int(v) for v in local.tolist()], dtype=object)
            for j in range(k):
                radix = self.strata_radix[stratum, j]
                operands[:, j] = self.strata_low[stratum, j] + rest % radix
                rest = rest // radix
        op_codes = self.combo_codes[self.strata_combo[stratum]]
        counts = None
        if len(self.space.operand_counts) > 1:
            counts = self.combo_counts[self.strata_combo[stratum]]
        return Block(operands, op_codes, evaluate_arrays(operands, op_codes), counts)


def split_indices(texts: Sequence[bytes], fractions: Sequence[float], salt: str = "") -> np.ndarray:
    """``split_of`` for many canonical texts (bytes) at once: indices into SPLITS."""
    salt_bytes = salt.encode("utf-8")
    blake = hashlib.blake2b
    digests = b"".join(blake(salt_bytes + t, digest_size=8).digest() for t in texts)
    h = np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64
    edges = []
    edge = 0.0
    for fraction in fractions:
        edge += fraction
        edges.append(edge)
    out = np.minimum(np.searchsorted(np.array(edges), h, side="right"), len(SPLITS) - 1)
    short = [i for i, t in enumerate(texts) if _TWO_DIGITS_BYTES.search(t) is None]
    out[short] = 0  # always_trains
    return out
