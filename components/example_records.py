"""ExampleGen's records: serialized tf.train.Example bytes, encoded by hand for a whole
block of equations at once (``encode_examples``), and the same record built with
tf.train.Example for one equation (``make_example``, the reference the tests compare with).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lstm_math.components import equations as eq
from lstm_math.components.example_layout import WORKING_KEY


def make_example(equation: eq.Equation, result: int, working: str = "") -> bytes:
    """One record with tf.train.Example (the reference for ``encode_examples``)."""
    digits = [len(str(v)) for v in equation.operands]
    feature = {
        "equation": tf.train.Feature(bytes_list=tf.train.BytesList(value=[equation.text.encode()])),
        "result": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(result).encode()])),
        "operator": tf.train.Feature(bytes_list=tf.train.BytesList(value=[equation.tag.encode()])),
        "operand_digits": tf.train.Feature(int64_list=tf.train.Int64List(value=digits)),
    }
    if working:  # only rows whose answer format has a working (task.data.answer_format)
        feature[WORKING_KEY] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[working.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# --------------------------------------------------------------------------------------
# Serialized tf.train.Example records, encoded by hand for a whole block at once.
# Wire format (protobuf): Example{1: Features{1: repeated MapEntry{1: key, 2: Feature}}};
# Feature{1: BytesList{1: repeated bytes} | 3: Int64List{1: packed varints}}. The entries
# are written in sorted key order, so the bytes are the same on every machine.
# tests/test_example_gen.py proves that TensorFlow parses them to the same Example.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _entry(key: str, feature: bytes) -> bytes:
    return _field(0x0A, _field(0x0A, key.encode()) + _field(0x12, feature))


def _bytes_entry(key: str, value: bytes) -> bytes:
    return _entry(key, _field(0x0A, _field(0x0A, value)))


def _int64_entry(key: str, values) -> bytes:
    return _entry(key, _field(0x1A, _field(0x0A, b"".join(_varint(int(v)) for v in values))))


class _PrefixTable:
    """Everything before the value of a bytes feature, by value length (grows on demand)."""

    def __init__(self, key: str):
        self.key = key
        self.table = np.empty(0, dtype=object)

    def __call__(self, lengths: np.ndarray) -> np.ndarray:
        need = int(lengths.max(initial=0)) + 1
        table = self.table  # one read: safe when DoFn threads share the table
        if need > len(table):
            grown = max(need, 2 * len(table), 64)
            table = np.array(
                [_bytes_entry(self.key, b"\0" * n)[:-n or None] for n in range(grown)],
                dtype=object)
            self.table = table
        return table[lengths]


_EQUATION_PREFIX = _PrefixTable("equation")
_RESULT_PREFIX = _PrefixTable("result")
_WORKING_PREFIX = _PrefixTable(WORKING_KEY)
_HEADS: dict[int, bytes] = {}


def _heads(lengths: np.ndarray) -> np.ndarray:
    uniq, inverse = np.unique(lengths, return_inverse=True)
    heads = []
    for n in uniq.tolist():
        if n not in _HEADS:
            _HEADS[n] = bytes([0x0A]) + _varint(n)
        heads.append(_HEADS[n])
    return np.array(heads, dtype=object)[inverse.reshape(-1)]


def _lengths(values) -> np.ndarray:
    return np.fromiter(map(len, values), dtype=np.int64, count=len(values))


def encode_examples(texts: list[bytes], results: list[bytes], operator_tags: list[bytes],
                    operand_digits: np.ndarray,
                    workings: list[bytes] | None = None) -> list[bytes]:
    """Serialized tf.train.Example records with the features of ``make_example``
    (``workings``: the rows' workings; an empty one is left out of its record).

    ``operand_digits`` is [n, num_operands] (digit counts; 0 = no such operand). Vectorized: a handful of numpy
    object-array concatenations per block instead of a protobuf message per equation.
    """
    n = len(texts)
    if n == 0:
        return []
    texts_a = np.array(texts, dtype=object)
    results_a = np.array(results, dtype=object)
    e_eq = _EQUATION_PREFIX(_lengths(texts)) + texts_a
    e_res = _RESULT_PREFIX(_lengths(results)) + results_a
    tags, tag_inverse = np.unique(np.array(operator_tags, dtype=object), return_inverse=True)
    e_op = np.array([_bytes_entry("operator", t) for t in tags.tolist()],
                    dtype=object)[tag_inverse.reshape(-1)]
    digit_rows, digit_inverse = np.unique(operand_digits, axis=0, return_inverse=True)
    # 0 digits: padding of a row with fewer operands than the widest; not written
    e_dig = np.array([_int64_entry("operand_digits", [d for d in row if d])
                      for row in digit_rows.tolist()],
                     dtype=object)[digit_inverse.reshape(-1)]
    body = _lengths(e_eq) + _lengths(e_dig) + _lengths(e_op) + _lengths(e_res)
    if workings is None or not any(workings):
        return (_heads(body) + e_eq + e_dig + e_op + e_res).tolist()
    work_a = np.array(workings, dtype=object)
    work_len = _lengths(workings)
    e_work = np.where(work_len > 0, _WORKING_PREFIX(work_len) + work_a, b"")
    body = body + _lengths(e_work)
    return (_heads(body) + e_eq + e_dig + e_op + e_res + e_work).tolist()
