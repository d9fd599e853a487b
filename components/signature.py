"""The serving signature: strings in, strings out, validation per row, all in the graph.

``build_serving_function(model, coverage)`` returns a tf.function with the contract of
docs/serving-contract.md: input ``equation`` (string [batch]); outputs ``result`` (string),
``valid`` (bool), ``error`` (string), ``confidence`` (float32), ``trusted`` (bool), each
[batch]; a model that writes its working (components.answer_formats) also ``working``
(string): the steps it wrote, '' for rows whose operator has none; ``result`` is always
the final answer only. A bad row is answered ``valid=false`` with a reason and never fails
the batch. ``trusted`` compares ``confidence`` with the trust threshold of the row's
operator (the Evaluator's, given as ``trust_thresholds`` and baked into the graph as
constants). The Evaluator calls the same function in process, so what is evaluated is what
is served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from lstm_math.components import answer_formats, tokenizer
from lstm_math.components.equations import MIXED_TAG
from lstm_math.serving.contract import JIT_BATCH_BUCKETS, TRUSTED_KEY, WORKING_OUTPUT

if TYPE_CHECKING:
    from lstm_math.config import Coverage

ALL_OPERATORS = "+-*/"
# Whitespace a client may put anywhere (ASCII only: a no-break space or an ideographic
# space is an unknown character, like a full-width digit).
WHITESPACE = r"[ \t\n\r\f\v]"
# Longest input accepted, in bytes: generous (leading zeros and spacing are allowed) but
# bounded, so a megabyte of text is a clear "too long" instead of work for the regexes.
MAX_INPUT_BYTES = 1024
_HEX = "0123456789ABCDEF"


def _char_class(chars: str) -> str:
    """A regex character class of the given operator characters ('-' placed last)."""
    body = "".join(c for c in chars if c != "-") + ("-" if "-" in chars else "")
    return "[" + body.replace("*", r"\*").replace("/", r"\/").replace("+", r"\+") + "]"


def _describe_char(char: tf.Tensor) -> tf.Tensor:
    """[batch] one-character strings -> "'x' (U+0078)", or just "U+0000" if unprintable."""
    codepoint = tf.strings.unicode_decode(char, "UTF-8", errors="replace").to_tensor(
        default_value=0, shape=[None, 1])[:, 0]
    digits = [tf.gather(tf.constant(list(_HEX)),
                        tf.bitwise.bitwise_and(tf.bitwise.right_shift(codepoint, 4 * k), 15))
              for k in range(5, -1, -1)]
    six = tf.strings.join(digits)
    # U+ and at least four hex digits, as Unicode writes them.
    code = tf.strings.join(["U+", tf.where(codepoint > 0xFFFFF, six,
                                            tf.where(codepoint > 0xFFFF,
                                                     tf.strings.substr(six, 1, 5),
                                                     tf.strings.substr(six, 2, 4)))])
    # Shown as itself only when it is a visible character: not a control, space, format
    # character (zero-width, bidirectional overrides), variation selector or special.
    invisible = ((codepoint == 0xAD) | ((codepoint >= 0x2000) & (codepoint <= 0x206F))
                 | ((codepoint >= 0xFE00) & (codepoint <= 0xFE0F)) | (codepoint == 0xFEFF)
                 | ((codepoint >= 0xFFF0) & (codepoint <= 0xFFFF)) | (codepoint >= 0xE0000))
    printable = ((codepoint > 0x20) & (codepoint < 0x7F)) | ((codepoint >= 0xA1) & ~invisible)
    return tf.where(printable, tf.strings.join(["'", char, "' (", code, ")"]), code)


def validate(equation: tf.Tensor, coverage: Coverage):
    """Per row: (valid bool, reason string, canonical compact text for the tokenizer)."""
    ops_all = _char_class(ALL_OPERATORS)
    trained = coverage.operators
    low, high = coverage.operand_min, coverage.operand_max
    num_operands, min_operands = coverage.num_operands, coverage.min_operands
    takes = (f"{num_operands}" if min_operands == num_operands
             else f"{min_operands} to {num_operands}")
    max_digits = len(str(high))

    # Invalid UTF-8 becomes U+FFFD instead of failing the batch.
    text = tf.strings.unicode_transcode(equation, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)
    too_long = tf.strings.length(equation) > MAX_INPUT_BYTES
    # Long rows are cut before the regexes run; they are answered "too long" anyway.
    text = tf.where(too_long, "", text)
    compact = tf.strings.regex_replace(text, WHITESPACE + "+", "")

    is_empty = tf.equal(tf.strings.length(compact), 0) & ~too_long
    bad_chars = tf.strings.regex_replace(compact, r"[0-9+\-*/]", "")
    has_unknown = tf.strings.length(bad_chars) > 0
    first_bad = tf.strings.substr(bad_chars, 0, 1, unit="UTF8_CHAR")
    digit_space_digit = tf.strings.regex_full_match(
        text, rf"(?s).*[0-9]{WHITESPACE}+[0-9].*")
    well_formed = tf.strings.regex_full_match(compact, rf"\d+({ops_all}\d+)+")
    no_operator = tf.strings.regex_full_match(compact, r"\d+")
    operator_count = tf.strings.length(tf.strings.regex_replace(compact, r"[^+\-*/]", ""))
    untrained = tf.strings.regex_replace(compact, r"[^+\-*/]", "")
    if trained:
        untrained = tf.strings.regex_replace(untrained, _char_class("".join(trained)), "")
    has_untrained = tf.strings.length(untrained) > 0
    first_untrained = tf.strings.substr(untrained, 0, 1)

    # Operands: strip leading zeros ('007' is 7), then check the range.
    canonical = tf.strings.regex_replace(compact, r"(^|[+\-*/])0+(\d)", r"\1\2")
    operands = tf.strings.split(tf.strings.regex_replace(canonical, r"[^0-9]+", " "))
    lengths = tf.strings.length(operands)
    safe = tf.ragged.map_flat_values(
        lambda s: tf.where(tf.strings.regex_full_match(s, r"\d{1,18}"), s, "0"), operands)
    values = tf.ragged.map_flat_values(tf.strings.to_number, safe, out_type=tf.int64)
    out_of_range = (
        tf.reduce_any(lengths > max_digits, axis=1)
        | tf.reduce_any(values > high, axis=1)
        | tf.reduce_any(values < low, axis=1)
    )
    division_by_zero = tf.strings.regex_full_match(canonical, r".*/0+($|[^0-9].*)")

    invalid_reasons = [
        (too_long, tf.fill(tf.shape(equation),
                           f"too long: more than {MAX_INPUT_BYTES} bytes")),
        (is_empty, tf.fill(tf.shape(equation), "empty equation")),
        (has_unknown, tf.strings.join(["unknown character ", _describe_char(first_bad)])),
        (digit_space_digit, tf.fill(tf.shape(equation),
                                    "malformed: two numbers without an operator between them")),
        (no_operator, tf.fill(tf.shape(equation), "malformed: no operator")),
        (~well_formed, tf.fill(tf.shape(equation),
                               "malformed: expected numbers separated by single operators, "
                               "like '31 + 87'")),
        (operator_count + 1 > num_operands,
         tf.fill(tf.shape(equation), f"too long: this model takes {takes} operands")),
        (operator_count + 1 < min_operands,
         tf.fill(tf.shape(equation), f"too short: this model takes {takes} operands")),
        (has_untrained, tf.strings.join(["operator '", first_untrained, "' not trained (trained: ",
                                         " ".join(trained), ")"])),
        (out_of_range, tf.fill(tf.shape(equation),
                               f"operand out of the trained range {low}..{high}")),
        (division_by_zero, tf.fill(tf.shape(equation), "division by zero")),
    ]
    reason = tf.fill(tf.shape(equation), "")
    for condition, message in reversed(invalid_reasons):
        reason = tf.where(condition, message, reason)
    valid = tf.equal(reason, "")
    return valid, reason, canonical


def bucket_size(rows: tf.Tensor) -> tf.Tensor:
    """The batch size the XLA-compiled decoder runs at for ``rows`` rows: the next power of
    two up to 1024, then the next multiple of 1024. XLA compiles once per shape; buckets
    bound the compilations (and the warm-up requests that pre-pay them) to a handful."""
    buckets = tf.constant(JIT_BATCH_BUCKETS, tf.int32)
    index = tf.searchsorted(buckets, tf.reshape(rows, [1]), side="left")[0]
    largest = JIT_BATCH_BUCKETS[-1]
    return tf.where(rows > largest, (rows + largest - 1) // largest * largest,
                    tf.gather(buckets, tf.minimum(index, len(JIT_BATCH_BUCKETS) - 1)))


def operator_tags(canonical: tf.Tensor) -> tf.Tensor:
    """[batch] compact equations -> their slice: the operator ('+'), or 'mixed' for three
    or more operands (``equations.operator_tag``)."""
    operators = tf.strings.regex_replace(canonical, r"[^+\-*/]", "")
    return tf.where(tf.strings.length(operators) == 1, operators, MIXED_TAG)


def trusted(valid: tf.Tensor, confidence: tf.Tensor, canonical: tf.Tensor,
            thresholds: dict | None, result: tf.Tensor) -> tf.Tensor:
    """True where the row is valid, an answer was read (``result`` not empty: a working the
    model wrote out of shape has none) and its confidence is at or above its slice's
    threshold.

    ``thresholds``: slice tag -> threshold (None or absent: no threshold, never trusted).
    The thresholds are float32 constants in the graph: the Evaluator's thresholds are
    float32 confidences, so the comparison is exact."""
    tags = operator_tags(canonical)
    limit = tf.fill(tf.shape(confidence), tf.constant(float("inf"), tf.float32))
    for tag, value in sorted((thresholds or {}).items()):
        if value is not None:
            limit = tf.where(tf.equal(tags, tag), tf.constant(value, tf.float32), limit)
    return valid & (tf.strings.length(result) > 0) & (confidence >= limit)


def build_serving_function(model, coverage: Coverage, jit_compile: bool = False,
                           trust_thresholds: dict | None = None):
    """The ``serving_default`` function for a trained model and what it covers.

    ``jit_compile``: the numeric core (token ids -> answer ids and probabilities) is
    compiled with XLA, fusing each decoder step into a few kernels (about 2x the throughput
    on CPU), run at bucketed batch sizes (``bucket_size``; padding rows are cut off again).
    The string work (validation, tokenizing, detokenizing) stays in plain TF ops. Real TF
    Serving runs such a model only with ``--xla_cpu_compilation_enabled=true``.

    ``trust_thresholds``: slice tag ('+', ..., 'mixed') -> the confidence at or above which
    an answer is ``trusted`` (the Evaluator's ``confidence.<tag>.threshold``); a slice
    without one is never trusted.
    """
    steps = coverage.max_result_length + 1
    # A model that writes a working also returns it (the extra output ``working``).
    with_working = bool(answer_formats.formats_of(coverage))
    placeholder = "+".join(["0"] * coverage.num_operands)

    def decode_plain(ids):
        out_ids, probs = model.greedy_decode(ids, steps)
        return tf.convert_to_tensor(out_ids), tf.cast(tf.convert_to_tensor(probs), tf.float32)

    # No AutoGraph here or in ``serve``: nothing branches on a tensor in Python, and
    # converting the model's decoder costs about 2 s of every process's first call.
    decode_compiled = tf.function(decode_plain, jit_compile=True, reduce_retracing=True,
                                  autograph=False)

    def decode_bucketed(ids):
        """The XLA version: rows padded up to their bucket, padding cut off again."""
        rows = tf.shape(ids)[0]
        padded = tf.pad(ids, [[0, bucket_size(rows) - rows], [0, 0]],
                        constant_values=tokenizer.PAD_ID)
        out_ids, probs = decode_compiled(padded)
        return out_ids[:rows], probs[:rows]

    decode = decode_bucketed if jit_compile else decode_plain

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="equation")],
                 autograph=False)
    def serve(equation):
        valid, error, canonical = validate(equation, coverage)
        model_input = tf.where(valid, canonical, placeholder)
        ids = tokenizer.encode_for_model(model_input, coverage)
        out_ids, probs = decode(ids)
        lengths = tokenizer.result_lengths(out_ids)
        used = tf.sequence_mask(lengths, steps, dtype=tf.float32)
        confidence = tf.exp(tf.reduce_sum(tf.math.log(tf.maximum(probs, 1e-30)) * used, axis=1))
        # result: the final answer only, read from the working where the format has one
        result, working = tokenizer.decode_outputs(out_ids, model_input, coverage)
        confidence = tf.where(valid, tf.clip_by_value(confidence, 0.0, 1.0), 0.0)
        outputs = {
            "result": tf.where(valid, result, ""),
            "valid": valid,
            "error": error,
            "confidence": confidence,
            TRUSTED_KEY: trusted(valid, confidence, canonical, trust_thresholds, result),
        }
        if with_working:
            outputs[WORKING_OUTPUT] = tf.where(valid, working, "")
        return outputs

    return serve
