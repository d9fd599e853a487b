"""Training metrics over padded target sequences: whole-answer exact match and per-character accuracy.

Under teacher forcing an answer is exactly right iff every target position's argmax is
right; greedy decoding then produces the same sequence, so this exact match equals the
exact match of the exported (greedy) model.
"""

from __future__ import annotations

import keras
from keras import ops

from lstm_math.components.equations import OPERATOR_TAGS
from lstm_math.components.tokenizer import PAD_ID


def _correct_and_mask(y_true, y_pred):
    y_true = ops.cast(y_true, "int32")
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    mask = ops.not_equal(y_true, PAD_ID)
    correct = ops.logical_or(ops.equal(predicted, y_true), ops.logical_not(mask))
    return correct, mask


@keras.saving.register_keras_serializable("lstm_math")
class ExactMatch(keras.metrics.Mean):
    """Fraction of answers whose every character (and the end marker) is right."""

    def __init__(self, name="exact_match", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        correct, _ = _correct_and_mask(y_true, y_pred)
        whole = ops.cast(ops.all(correct, axis=-1), "float32")
        return super().update_state(whole, sample_weight=sample_weight)


@keras.saving.register_keras_serializable("lstm_math")
class CharAccuracy(keras.metrics.Mean):
    """Fraction of target characters (padding excluded) predicted right."""

    def __init__(self, name="char_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        correct, mask = _correct_and_mask(y_true, y_pred)
        mask_f = ops.cast(mask, "float32")
        return super().update_state(ops.cast(correct, "float32"), sample_weight=mask_f)


def loss_fn(from_logits: bool = True):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=PAD_ID)


def operator_index(tags):
    """[batch] operator tag strings -> [batch] int32 index into OPERATOR_TAGS."""
    import tensorflow as tf

    hits = tf.cast(tf.equal(tf.expand_dims(tags, 1), tf.constant(OPERATOR_TAGS)), tf.int32)
    return tf.cast(tf.argmax(hits, axis=1), tf.int32)


def batch_sums(targets, scores, from_logits: bool, operator_ids=None) -> dict:
    """Additive statistics of one (per-replica) batch; sums over replicas and batches give
    the epoch's loss, character accuracy and exact match, overall and per operator.

    ``loss_sum`` / ``tokens`` is Keras' masked ``sum_over_batch_size`` cross-entropy.
    """
    targets = ops.cast(targets, "int32")
    token_loss = ops.sparse_categorical_crossentropy(targets, scores, from_logits=from_logits)
    correct, mask = _correct_and_mask(targets, scores)
    mask_f = ops.cast(mask, "float32")
    whole = ops.cast(ops.all(correct, axis=-1), "float32")
    sums = {
        "loss_sum": ops.sum(ops.cast(token_loss, "float32") * mask_f),
        "tokens": ops.sum(mask_f),
        "chars_right": ops.sum(ops.cast(correct, "float32") * mask_f),
        "answers_right": ops.sum(whole),
        "answers": ops.cast(ops.shape(targets)[0], "float32"),
    }
    if operator_ids is not None:
        one_hot = ops.one_hot(operator_ids, len(OPERATOR_TAGS))
        sums["answers_right_per_operator"] = ops.sum(one_hot * ops.expand_dims(whole, 1), axis=0)
        sums["answers_per_operator"] = ops.sum(one_hot, axis=0)
    return sums


def summarize(sums: dict) -> dict:
    """Epoch totals (numpy / floats) -> metrics: loss, char_accuracy, exact_match and
    exact_match/<op> for each operator seen."""
    out = {
        "loss": float(sums["loss_sum"]) / max(float(sums["tokens"]), 1.0),
        "char_accuracy": float(sums["chars_right"]) / max(float(sums["tokens"]), 1.0),
        "exact_match": float(sums["answers_right"]) / max(float(sums["answers"]), 1.0),
    }
    if "answers_per_operator" in sums:
        for tag, right, n in zip(OPERATOR_TAGS, sums["answers_right_per_operator"],
                                 sums["answers_per_operator"]):
            if float(n) > 0:
                out[f"exact_match/{tag}"] = float(right) / float(n)
    return out
