"""TensorBoard summaries of a training run: scalars per epoch, the model graph, and a few
validation equations decoded greedily as the exported graph does."""

from __future__ import annotations

import tensorflow as tf

from lstm_math.components import data as data_lib
from lstm_math.components import tokenizer


def _first_batch_or_none(ds):
    for batch in ds.take(1):
        return batch
    return None


class SamplePredictions:
    """A fixed handful of validation equations, decoded greedily as the exported graph does."""

    def __init__(self, examples_dir: str, coverage: dict, count: int):
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
        out_ids, _ = model.greedy_decode(ids, self.coverage["max_result_length"] + 1)
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


def write_scalars(writer, values: dict, step: int) -> None:
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)
    writer.flush()


def trace_graph(model, coverage: dict, writer) -> None:
    """The forward pass's graph in TensorBoard's Graphs tab: the traced function graph
    itself, its ops grouped by layer (embedding, encoder_0, decoder, attention_query,
    logits: Keras suffixes a layer's scope, embedding_1), not a trace of the call, which
    shows one opaque node."""
    width = coverage["max_result_length"] + 1
    spec = (tf.TensorSpec([None, coverage["max_input_length"]], tf.int32, name="equation_ids"),
            tf.TensorSpec([None, width], tf.int32, name="decoder_ids"))

    @tf.function(input_signature=[spec])
    def forward(inputs):  # call(), not __call__: the layers at the top, not in a model box
        return model.call(inputs, training=False)

    graph = forward.get_concrete_function().graph
    with writer.as_default():
        tf.summary.graph(graph)
    writer.flush()
