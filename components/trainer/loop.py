"""A custom training loop over any tf.distribute strategy (``strategy.run`` per step).

Not ``model.fit``: Keras 3 ``fit`` under MultiWorkerMirroredStrategy is broken upstream
(keras-team/keras#20585), and this one loop serves every strategy. The loss is Keras'
masked cross-entropy averaged over the *global* batch's target tokens (an all-reduced
count), so N replicas compute the same loss and update as one device on the same batches.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from lstm_math.components import metrics as metrics_lib


def steps_for(count: int, batch_size: int) -> int:
    return max(1, math.ceil(count / batch_size))


class TrainLoop:
    """A custom training loop over any tf.distribute strategy.

    ``train_steps`` / ``eval_steps`` run ``n`` steps inside one tf.function (``strategy.run``
    per step) and return the summed statistics of components.metrics.batch_sums, reduced
    over replicas (and workers).
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy):
        self.model = model
        self.strategy = strategy
        self.optimizer = model.optimizer
        self.from_logits = bool(getattr(model, "from_logits", True))
        self._train_fn = None
        self._eval_fn = None

    def _replica_step(self, batch, training: bool):
        inputs, targets, operator_ids = batch
        model = self.model
        ctx = tf.distribute.get_replica_context()
        if not training:
            return metrics_lib.batch_sums(targets, model(inputs, training=False),
                                          self.from_logits, operator_ids)
        with tf.GradientTape() as tape:
            scores = model(inputs, training=True)
            sums = metrics_lib.batch_sums(targets, scores, self.from_logits, operator_ids)
            # Mean over the target tokens of the whole global batch: all replicas' counts.
            global_tokens = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sums["tokens"])
            loss = sums["loss_sum"] / tf.maximum(global_tokens, 1.0)
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        # Keras' TF optimizer all-reduces (sums) the gradients over replicas.
        self.optimizer.apply_gradients(zip(grads, variables))
        return sums

    def _make_fn(self, training: bool):
        strategy = self.strategy

        # Its own tf.function, so that the two calls below share one trace: traced inline,
        # the step (forward, gradient, optimizer) would be traced twice, once for the first
        # step and once for the loop body (about 0.8 s of a 64-unit model's first epoch).
        # No AutoGraph: nothing here branches or loops on a tensor in Python, and converting
        # the model's code would cost seconds of the first epoch.
        @tf.function(autograph=False)
        def step(iterator):
            per_replica = strategy.run(self._replica_step, args=(next(iterator), training))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}

        def run(iterator, n):
            def body(i, totals):
                reduced = step(iterator)
                return i + 1, {k: totals[k] + reduced[k] for k in reduced}

            _, totals = tf.while_loop(lambda i, _: i < n, body, (tf.constant(1), step(iterator)))
            return totals

        return tf.function(run, autograph=False)

    def _run(self, fn, iterator, steps: int, steps_per_loop: int, progress=None) -> dict:
        totals: dict | None = None
        done = 0
        while done < steps:
            n = min(steps_per_loop, steps - done)
            out = fn(iterator, tf.constant(n))
            out = {k: v.numpy() for k, v in out.items()}
            totals = out if totals is None else {k: totals[k] + out[k] for k in out}
            done += n
            if progress is not None:
                progress(done, totals)
        return totals or {}

    def train_steps(self, iterator, steps: int, steps_per_loop: int = 20, progress=None) -> dict:
        if self._train_fn is None:
            self._train_fn = self._make_fn(True)
        return self._run(self._train_fn, iterator, steps, steps_per_loop, progress)

    def eval_steps(self, iterator, steps: int, steps_per_loop: int = 20) -> dict:
        if self._eval_fn is None:
            self._eval_fn = self._make_fn(False)
        return self._run(self._eval_fn, iterator, steps, steps_per_loop)

    def learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))
