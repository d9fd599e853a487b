"""TensorBoard summaries of a training run: scalars per epoch, the model graph, a few
validation equations decoded greedily as the exported graph does, and the HParams
dashboard's record of what was trained.

The HParams record is shared with the Tuner's trials (``components.tuner.tensorboard``): a
trial and a training write every model and optimizer hyperparameter under the same names
and the same metrics (``BEST_TAG`` at the run's root, ``exact_match``, ``loss``, ... in its
``validation`` and ``train`` sub-runs), so trials and trainings of any number of pipeline
runs line up in one table when TensorBoard reads ``<root>/tensorboard``. No run writes an
experiment record (``hparams_config``): TensorBoard then builds the table's columns from
every run's values (TensorBoard takes one experiment record, from whichever run it reads
first, and would hide what that one does not list), and puts the hyperparameters whose
values differ first. Integers are written as strings: the dashboard prints every number
with five significant digits (64 reads ``64.000``).
"""

from __future__ import annotations

import tensorflow as tf

from lstm_math.components import data as data_lib
from lstm_math.components import tokenizer
from lstm_math.config import Coverage


def _first_batch_or_none(ds):
    for batch in ds.take(1):
        return batch
    return None


class SamplePredictions:
    """A fixed handful of validation equations, decoded greedily as the exported graph does."""

    def __init__(self, examples_dir: str, coverage: Coverage, count: int):
        self.coverage = coverage
        batch = _first_batch_or_none(data_lib.features_dataset(examples_dir, "validation",
                                                               max(1, count)))
        self.equations = batch["equation"] if batch is not None else tf.constant([], tf.string)
        self.targets = batch["result"] if batch is not None else tf.constant([], tf.string)

    def table(self, model) -> tuple[str, float]:
        """(markdown table of equation / target / prediction / right, fraction right)."""
        if int(tf.size(self.equations)) == 0:
            return "(no validation examples)", 0.0
        ids = tokenizer.encode_for_model(self.equations, self.coverage)
        out_ids, _ = model.greedy_decode(ids, self.coverage.max_result_length + 1)
        predicted, workings = tokenizer.decode_outputs(tf.convert_to_tensor(out_ids),
                                             tokenizer.compact(self.equations), self.coverage)
        rows = ["| equation | target | prediction | right | working |", "|---|---|---|---|---|"]
        right = 0
        for eq_, target, pred, work in zip(self.equations.numpy(), self.targets.numpy(),
                                           predicted.numpy(), workings.numpy()):
            ok = target == pred
            right += ok
            rows.append(f"| `{eq_.decode()}` | `{target.decode()}` | `{pred.decode()}` | "
                        f"{'yes' if ok else 'NO'} | {'`' + work.decode() + '`' if work else ''} |")
        return "\n".join(rows), right / len(predicted)


BEST_TAG = "best_val_exact_match"  # a run's best validation exact match (HParams metric)


def hparams_values(model: dict, optimizer: dict) -> dict:
    """Every model and optimizer hyperparameter as the HParams dashboard shows it: integers
    as strings, floats as numbers, booleans and strings as they are; ``None`` (the model
    family's default) is left out."""
    values = {}
    for name, value in {**model, **optimizer}.items():
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        values[name] = value
    return values


def write_hparams(writer, model: dict, optimizer: dict, trial_id: str) -> None:
    """This run's hyperparameters (``hparams_values``) for the HParams dashboard, at the
    run's root. ``trial_id`` names the session group: unique per run (a cached step linked
    from two pipeline runs stays one group)."""
    from tensorboard.plugins.hparams import api as hp_api

    with writer.as_default():
        hp_api.hparams(hparams_values(model, optimizer), trial_id=trial_id)
    writer.flush()


def write_best(writer, value: float) -> None:
    """The run's ``BEST_TAG`` (the HParams dashboard's first metric)."""
    with writer.as_default():
        tf.summary.scalar(BEST_TAG, float(value), step=0)
    writer.flush()


def write_scalars(writer, values: dict, step: int) -> None:
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)
    writer.flush()


def trace_graph(model, coverage: Coverage, writer) -> None:
    """The forward pass's graph in TensorBoard's Graphs tab: the traced function graph
    itself, its ops grouped by layer (embedding, encoder_0, decoder, attention_query,
    logits: Keras suffixes a layer's scope, embedding_1), not a trace of the call, which
    shows one opaque node."""
    width = coverage.max_result_length + 1
    spec = (tf.TensorSpec([None, coverage.max_input_length], tf.int32, name="equation_ids"),
            tf.TensorSpec([None, width], tf.int32, name="decoder_ids"))

    @tf.function(input_signature=[spec], autograph=False)
    def forward(inputs):  # call(), not __call__: the layers at the top, not in a model box
        return model.call(inputs, training=False)

    graph = forward.get_concrete_function().graph
    with writer.as_default():
        tf.summary.graph(graph)
    writer.flush()
