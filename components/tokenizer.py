"""The one tokenizer: used by the tf.data input pipeline and by the serving signature.

Everything is TensorFlow ops on string tensors, so it runs inside the exported graph and
training and serving cannot drift apart.

Input:  equation text -> whitespace removed -> one id per character, left aligned, padded.
Output: result text -> ids + END, in one of two layouts (the coverage's ``output_format``):
  ``left``           characters (optionally reversed, least significant digit first), END,
                     then padding: the autoregressive decoder's targets (teacher forcing).
  ``right_aligned``  the 2017 post's layout: the answer right-aligned in a field of spaces,
                     then END; every position is a target (the ``seed`` model emits them all
                     at once).
Decoding drops spaces and everything from the first END, so both layouts decode the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from lstm_math.components.answer_formats import answer_tf, display_tf, formats_of, row_tags_tf

if TYPE_CHECKING:
    from lstm_math.config import Coverage

PAD, START, END, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
CHARACTERS = tuple("0123456789+-*/")
SPACE = " "  # the right-aligned layout's fill character (last, so other ids are unchanged)
VOCAB = SPECIALS + CHARACTERS + (SPACE,)
PAD_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3
SPACE_ID = VOCAB.index(SPACE)
VOCAB_SIZE = len(VOCAB)
OUTPUT_FORMATS = ("left", "right_aligned")


def _byte_table() -> np.ndarray:
    table = np.full([256], UNK_ID, dtype=np.int32)
    for i, ch in enumerate(VOCAB):
        if ch in CHARACTERS:
            table[ord(ch)] = i
    return table


_BYTE_TO_ID = _byte_table()
_BYTE_TO_ID_SPACED = _BYTE_TO_ID.copy()  # a working's separator is the SPACE token
_BYTE_TO_ID_SPACED[ord(SPACE)] = SPACE_ID
_ID_TO_CHAR = np.array([c if c in CHARACTERS else "" for c in VOCAB])  # SPACE -> ""
_ID_TO_CHAR_SPACED = np.array([c if c in CHARACTERS + (SPACE,) else "" for c in VOCAB])


def compact(text: tf.Tensor) -> tf.Tensor:
    """Removes all whitespace: '31 + 87' and ' 31+87 ' both become '31+87'."""
    return tf.strings.regex_replace(text, r"\s+", "")


def _char_ids(text: tf.Tensor) -> tf.RaggedTensor:
    codepoints = tf.strings.unicode_decode(text, "UTF-8", errors="replace")
    codepoints = tf.clip_by_value(codepoints, 0, 255)  # anything non-ASCII maps to UNK
    return tf.gather(tf.constant(_BYTE_TO_ID), codepoints)


def pad_operands(text: tf.Tensor, digits: int) -> tf.Tensor:
    """Every operand of compact equation texts zero-padded to ``digits`` digits
    ('12*345' -> '012*345' for 3); longer operands keep their last ``digits`` digits (the
    serving signature refuses them before they get here)."""
    if digits <= 1:
        return text
    text = tf.strings.regex_replace(text, r"(\d+)", "0" * (digits - 1) + r"\1")
    return tf.strings.regex_replace(text, r"\d*(\d{%d})" % digits, r"\1")


def encode_equations(equations: tf.Tensor, max_length: int, pad_digits: int = 0) -> tf.Tensor:
    """[batch] strings -> [batch, max_length] int32 ids (whitespace removed, padded;
    ``pad_digits`` > 0: operands zero-padded to that many digits, ``pad_operands``)."""
    text = compact(equations)
    if pad_digits:
        text = pad_operands(text, pad_digits)
    ids = _char_ids(text)
    return ids.to_tensor(default_value=PAD_ID, shape=[None, max_length])


def model_text(equations: tf.Tensor, coverage: Coverage) -> tf.Tensor:
    """Equation texts as a model of this coverage reads them: whitespace removed, operands
    zero-padded where it was trained with ``pad_operands`` ('7 + 45' -> '007+045')."""
    text = compact(equations)
    return pad_operands(text, len(str(coverage.operand_max))) if coverage.pad_operands else text


def encode_for_model(equations: tf.Tensor, coverage: Coverage) -> tf.Tensor:
    """Ids [batch, max_input_length] of ``model_text``, as a model of this coverage was
    trained: the one call of the input pipeline and the serving signature."""
    ids = _char_ids(model_text(equations, coverage))
    return ids.to_tensor(default_value=PAD_ID, shape=[None, coverage.max_input_length])


def _working_ids(text: tf.Tensor) -> tf.RaggedTensor:
    """Ids of a working (components.answer_formats): digits, signs and the SPACE between
    values."""
    codepoints = tf.strings.unicode_decode(text, "UTF-8", errors="replace")
    return tf.gather(tf.constant(_BYTE_TO_ID_SPACED), tf.clip_by_value(codepoints, 0, 255))


def encode_results(results: tf.Tensor, max_length: int, reverse: bool,
                   output_format: str = "left",
                   workings: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """[batch] result strings -> (decoder inputs, decoder targets), each [batch, max_length + 1].

    ``left``: targets are the characters followed by END, then padding; inputs are START
    followed by the targets shifted right (teacher forcing).
    ``right_aligned``: targets are spaces, the characters, END (no padding: every position
    counts); inputs are START followed by the targets shifted right.
    ``workings`` ([batch] strings, ``left`` only): a row with a non-empty working is
    trained on it, as written (never reversed), instead of its result.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format: {output_format!r}; choose from {OUTPUT_FORMATS}")
    ids = _char_ids(results)
    if reverse:
        ids = tf.reverse(ids, axis=[1])
    if workings is not None:
        if output_format != "left":
            raise ValueError("a working needs output_format 'left'")
        width = max_length
        dense = tf.where(tf.strings.length(workings)[:, None] > 0,
                         _working_ids(workings).to_tensor(PAD_ID, shape=[None, width]),
                         ids.to_tensor(PAD_ID, shape=[None, width]))
        ids = tf.RaggedTensor.from_tensor(dense, padding=PAD_ID)
    batch = tf.shape(results)[0]
    if output_format == "right_aligned":
        # Reverse, pad on the right with spaces, reverse back: right-aligned in max_length.
        flipped = tf.reverse(ids, axis=[1]).to_tensor(default_value=SPACE_ID,
                                                      shape=[None, max_length])
        body = tf.reverse(flipped, axis=[1])
        targets = tf.concat([body, tf.fill([batch, 1], END_ID)], axis=1)
        inputs = tf.concat([tf.fill([batch, 1], START_ID), body], axis=1)
        return inputs, targets
    end = tf.fill([batch, 1], END_ID)
    start = tf.fill([batch, 1], START_ID)
    targets = tf.concat([ids, tf.RaggedTensor.from_tensor(end)], axis=1)
    inputs = tf.concat([tf.RaggedTensor.from_tensor(start), ids], axis=1)
    width = max_length + 1
    return (
        inputs.to_tensor(default_value=PAD_ID, shape=[None, width]),
        targets.to_tensor(default_value=PAD_ID, shape=[None, width]),
    )


def decode_results(ids: tf.Tensor, reverse: bool, keep_spaces: bool = False) -> tf.Tensor:
    """[batch, time] output ids -> [batch] strings; spaces and everything from the first END
    are dropped (so it reads both output formats); ``keep_spaces``: spaces are kept (a
    working's separators)."""
    ids = tf.convert_to_tensor(ids, tf.int32)
    is_end = tf.cast(tf.equal(ids, END_ID), tf.int32)
    before_end = tf.equal(tf.cumsum(is_end, axis=1), 0)
    chars = tf.gather(tf.constant(_ID_TO_CHAR_SPACED if keep_spaces else _ID_TO_CHAR), ids)
    chars = tf.where(before_end, chars, "")
    if reverse:
        chars = tf.reverse(chars, axis=[1])
    return tf.strings.reduce_join(chars, axis=1)


def result_lengths(ids: tf.Tensor) -> tf.Tensor:
    """Number of tokens up to and including the first END (the whole width if none)."""
    ids = tf.convert_to_tensor(ids, tf.int32)
    is_end = tf.cast(tf.equal(ids, END_ID), tf.int32)
    upto = tf.cast(tf.equal(tf.cumsum(is_end, axis=1) - is_end, 0), tf.int32)
    return tf.reduce_sum(upto, axis=1)


def decode_outputs(out_ids, compact, coverage: Coverage):
    """[batch, steps] greedy output ids and the rows' compact equation texts -> (final
    answers, workings), [batch] strings each: rows whose operator tag has a working format
    get the answer read from it and the working (steps spaced) as written; the others the
    decoded answer in the model's digit order and an empty working. The one reading of a
    model's output: the serving signature and the Trainer's sample predictions."""
    direct = decode_results(out_ids, coverage.reverse_output)
    formats = formats_of(coverage)
    empty = tf.fill(tf.shape(direct), "")
    if not formats:
        return direct, empty
    raw = decode_results(out_ids, False, keep_spaces=True)
    tags = row_tags_tf(compact)
    high = coverage.operand_max
    result, shown = direct, empty
    for tag, fmt in sorted(formats.items()):
        mine = tf.equal(tags, tag)
        result = tf.where(mine, answer_tf(fmt, raw, high), result)
        shown = tf.where(mine, display_tf(fmt, raw, high), shown)
    return result, shown

