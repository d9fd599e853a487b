"""Training metrics over padded target sequences: whole-answer exact match and per-character accuracy.

Under teacher forcing an answer is exactly right iff every target position's argmax is
right; greedy decoding then produces the same sequence, so this exact match equals the
exact match of the exported (greedy) model.
"""

from __future__ import annotations

import keras
from keras import ops

from components.tokenizer import PAD_ID


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


def loss_fn():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID)
