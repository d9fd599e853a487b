"""Stand-ins for trained networks, written in plain TensorFlow, for the Evaluator's tests
(and the InfraValidator's): they read the equation from the encoder ids and answer with
known mistakes, so every figure the Evaluator prints can be checked independently."""

from __future__ import annotations

import tensorflow as tf

from components import equations as eq
from components import tokenizer


def _texts(encoder_ids):
    chars = tf.gather(tf.constant([""] * len(tokenizer.SPECIALS) + list(tokenizer.CHARACTERS)),
                      encoder_ids)
    return tf.strings.reduce_join(chars, axis=1)


class OracleModel(tf.Module):
    """Two operands. Right on every equation except ``a == wrong_a`` with operator '+',
    where it answers truth + ``offset``. Per-step probability 0.99 where right and 0.6 where
    wrong."""

    def __init__(self, coverage: dict, wrong_a: int = 7, offset: int = 100):
        super().__init__()
        self.reverse = bool(coverage["reverse_output"])
        self.wrong_a = wrong_a
        self.offset = offset

    def greedy_decode(self, encoder_ids, steps: int):
        text = _texts(encoder_ids)
        numbers = tf.strings.split(tf.strings.regex_replace(text, r"[+\-*/]", " "))
        values = tf.strings.to_number(numbers, out_type=tf.int64).to_tensor(shape=[None, 2])
        a, b = values[:, 0], values[:, 1]
        op = tf.strings.regex_replace(text, r"[0-9]", "")
        result = tf.where(tf.equal(op, "+"), a + b,
                          tf.where(tf.equal(op, "-"), a - b,
                                   tf.where(tf.equal(op, "*"), a * b,
                                            tf.math.floordiv(a, tf.maximum(b, 1)))))
        wrong = tf.equal(op, "+") & tf.equal(a, self.wrong_a)
        result = tf.where(wrong, result + self.offset, result)
        _, ids = tokenizer.encode_results(tf.strings.as_string(result), steps - 1, self.reverse)
        used = tf.sequence_mask(tokenizer.result_lengths(ids), steps)
        p = tf.where(wrong, 0.6, 0.99)[:, None] * tf.ones([1, steps])
        return ids, tf.where(used, p, 1.0)


class TableOracle(tf.Module):
    """Any operand count: answers by looking the compact equation up in a table of the whole
    (small) space. ``mistake(equation) -> (answer, per-step probability) or None`` decides
    the wrong answers; right ones get ``right_p`` per step."""

    def __init__(self, coverage: dict, mistake, right_p: float = 0.99):
        super().__init__()
        self.reverse = bool(coverage["reverse_output"])
        n = int(coverage["num_operands"])
        space = eq.EquationSpace(tuple(coverage["operators"]), int(coverage["operand_min"]),
                                 int(coverage["operand_max"]), n,
                                 int(coverage.get("min_operands", n)))
        keys, answers, probs = [], [], []
        self.wrong = {}
        for i in range(space.size):
            e = space.equation_at(i)
            keys.append(e.text.replace(" ", ""))
            bad = mistake(e)
            if bad is None:
                answers.append(str(e.result))
                probs.append(right_p)
            else:
                answers.append(str(bad[0]))
                probs.append(float(bad[1]))
                self.wrong[e.text] = bad
        init = tf.lookup.KeyValueTensorInitializer
        self.answers = tf.lookup.StaticHashTable(init(keys, answers), "?")
        self.probs = tf.lookup.StaticHashTable(
            init(tf.constant(keys), tf.constant(probs, tf.float32)), 0.5)

    def greedy_decode(self, encoder_ids, steps: int):
        text = _texts(encoder_ids)
        _, ids = tokenizer.encode_results(self.answers.lookup(text), steps - 1, self.reverse)
        used = tf.sequence_mask(tokenizer.result_lengths(ids), steps)
        p = self.probs.lookup(text)[:, None] * tf.ones([1, steps])
        return ids, tf.where(used, p, 1.0)
