"""Trainer: tf.data from the shards into a Keras seq2seq model under a tf.distribute strategy.

Training runs a custom loop (``strategy.run`` over a distributed dataset), not ``model.fit``:
Keras 3 ``fit`` under MultiWorkerMirroredStrategy is broken upstream (keras-team/keras#20585,
PerReplica conversion errors), and the same loop serves every strategy (one device, local
MirroredStrategy, MultiWorkerMirroredStrategy from TF_CONFIG). The loss is Keras' masked
cross-entropy averaged over the *global* batch's target tokens (an all-reduced count), so a
run over N replicas computes the same loss and update as one device on the same batches.

Writes, under its output directory:
  model.keras          the trained model (Keras format; custom classes registered)
  coverage.json        what the model covers (operators, range, lengths, output format)
  hparams.json         the hyperparameters it was trained with
  history.json         every epoch's metrics (train and val_*), in order
  logs/train, logs/validation
                       TensorBoard: loss, char_accuracy, exact_match and exact_match/<op>,
                       learning_rate, examples_per_second; sample predictions (text) each
                       epoch; the model graph
  checkpoints/         tf.train.Checkpoint (model, optimizer, epoch, early-stopping state)
                       after every epoch: the same command, restarted after a crash or a
                       SIGKILL, resumes after the last finished epoch
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf

from components import data as data_lib
from components import metrics as metrics_lib
from components import tokenizer
from components.metrics import CharAccuracy, ExactMatch, loss_fn
from components.models import ModelHParams, build_model, output_format_of

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "ckpt"


def choose_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """default: one device; mirrored: all local GPUs (or CPUs); multi_worker: TF_CONFIG cluster."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = len(tf_config.get("cluster", {}).get("worker", []))
    if kind == "multi_worker" or (kind == "auto" and workers > 1):
        log.info("strategy: MultiWorkerMirroredStrategy (%d workers from TF_CONFIG)", workers)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and gpus):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        log.info("strategy: MirroredStrategy over %s", devices)
        return tf.distribute.MirroredStrategy(devices)
    log.info("strategy: default (one device)")
    return tf.distribute.get_strategy()


def model_coverage(base_coverage: dict, hparams: ModelHParams) -> dict:
    """The data's coverage plus how this model family lays out its answers."""
    output_format = output_format_of(hparams.family)
    reverse = hparams.reverse_output and output_format == "left"
    return {**base_coverage, "reverse_output": reverse, "output_format": output_format}


def compile_model(hparams: ModelHParams, coverage: dict, total_steps: int,
                  lr_schedule: str = "cosine") -> keras.Model:
    """The model, built and compiled (call inside the strategy's scope).

    ``seed`` gets the post's optimizer: plain Adam at the configured rate (0.01 in the
    preset); the attention family gets gradient clipping.
    """
    model = build_model(hparams, coverage["max_result_length"] + 1)
    if lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            hparams.learning_rate, decay_steps=max(1, total_steps), alpha=0.02)
    else:
        lr = hparams.learning_rate
    clip = {} if hparams.family == "seed" else {"clipnorm": 1.0}
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr, **clip),
        loss=loss_fn(from_logits=getattr(model, "from_logits", True)),
        metrics=[ExactMatch(), CharAccuracy()],
    )
    # Build the variables now (inside the strategy scope of the caller).
    width = coverage["max_result_length"] + 1
    model((tf.zeros([1, coverage["max_input_length"]], tf.int32), tf.zeros([1, width], tf.int32)))
    return model


def checkpointed_variables(variables) -> dict:
    """Variables of a Keras 3 model (``model.weights``) or optimizer (``.variables``),
    keyed by their position, for
    tf.train.Checkpoint. Checkpointing the model object itself leaves out the weights of
    layers Keras does not expose to TF's object graph (LSTM cells, layers kept in lists):
    a resume or a best-epoch restore would then mix restored Dense weights with untouched
    LSTM weights. Positions, not paths: Keras renames layers and optimizers that a process
    builds twice (``adam_1``, ``batch_normalization_1``); the order of the same
    architecture's variables does not change, and a restore checks every shape."""
    return {f"v{i:04d}": (v.value if hasattr(v, "value") else v)
            for i, v in enumerate(variables)}


def restore_epoch_weights(model, ckpt_dir: str, epoch: int) -> bool:
    """Loads the model weights of epoch ``epoch``'s checkpoint; False if it is gone."""
    path = os.path.join(ckpt_dir, f"{CHECKPOINT_PREFIX}-{epoch}")
    if not tf.io.gfile.exists(path + ".index"):
        return False
    status = tf.train.Checkpoint(model_variables=checkpointed_variables(model.weights)).read(path)
    status.expect_partial().assert_existing_objects_matched()
    return True


def is_better_epoch(exact_match: float, loss: float, best_exact_match: float,
                    best_loss: float) -> bool:
    """Whether an epoch's validation result beats the best so far: a higher exact match,
    or the same exact match (it saturates at 1.0 on easy tasks) with a lower loss."""
    return exact_match > best_exact_match or (exact_match == best_exact_match
                                              and loss < best_loss)


def seed_weights(seed: int | None) -> None:
    """Seeds Python, NumPy and TF so the next model built gets the same initial weights."""
    if seed is not None:
        keras.utils.set_random_seed(seed)


def steps_for(count: int, batch_size: int) -> int:
    return max(1, math.ceil(count / batch_size))


def _worker_role() -> tuple[str | None, int]:
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = cluster.get("task", {})
    return task.get("type"), int(task.get("index", 0))


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # the class is CollectiveAllReduceStrategy
    return type(strategy).__name__


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Writes TensorBoard logs, checkpoints and the model: worker 0 (or 'chief')."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = _worker_role()
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


# --------------------------------------------------------------------------------------
# The training loop.


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

        def step(iterator):
            per_replica = strategy.run(self._replica_step, args=(next(iterator), training))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}

        def run(iterator, n):
            totals = step(iterator)
            for _ in tf.range(n - 1):
                reduced = step(iterator)
                totals = {k: totals[k] + reduced[k] for k in reduced}
            return totals

        return tf.function(run)

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
        ids = tokenizer.encode_equations(self.equations, self.coverage["max_input_length"])
        out_ids, _ = model.greedy_decode(ids, self.coverage["max_result_length"] + 1)
        predicted = tokenizer.decode_results(tf.convert_to_tensor(out_ids),
                                             self.coverage["reverse_output"]).numpy()
        rows = ["| equation | target | prediction | right |", "|---|---|---|---|"]
        right = 0
        for eq_, target, pred in zip(self.equations.numpy(), self.targets.numpy(), predicted):
            ok = target == pred
            right += ok
            rows.append(f"| `{eq_.decode()}` | `{target.decode()}` | `{pred.decode()}` | "
                        f"{'yes' if ok else 'NO'} |")
        return "\n".join(rows), right / len(predicted)


def _write_scalars(writer, values: dict, step: int) -> None:
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)
    writer.flush()


def _trace_graph(model, coverage: dict, writer) -> None:
    """The forward pass's graph in TensorBoard's Graphs tab."""
    width = coverage["max_result_length"] + 1
    spec = (tf.TensorSpec([None, coverage["max_input_length"]], tf.int32),
            tf.TensorSpec([None, width], tf.int32))

    @tf.function(input_signature=[spec])
    def forward(inputs):
        return model(inputs, training=False)

    tf.summary.trace_on(graph=True, profiler=False)
    forward((tf.zeros([1, coverage["max_input_length"]], tf.int32), tf.zeros([1, width], tf.int32)))
    with writer.as_default():
        tf.summary.trace_export(name="model", step=0)
    writer.flush()


class _CheckpointWriter:
    """Checkpoints after every epoch; under MultiWorkerMirroredStrategy every worker saves
    (saving may involve collectives) but only the chief's copy is kept."""

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, chief: bool,
                 max_to_keep: int):
        self.directory = directory
        self.chief = chief
        if chief:
            write_dir = directory
        else:
            _, task_id = _worker_role()
            write_dir = os.path.join(tempfile.gettempdir(), f"lstm_math_worker{task_id}_ckpt")
        self.write_dir = write_dir
        self.manager = tf.train.CheckpointManager(checkpoint, write_dir, max_to_keep=max_to_keep,
                                                  checkpoint_name=CHECKPOINT_PREFIX)

    def save(self, epoch: int) -> str:
        path = self.manager.save(checkpoint_number=epoch)
        if not self.chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        return path


def run_trainer(config, examples_dir: str, base_coverage: dict, hparams: ModelHParams,
                output_dir: str, keep_model: bool = False) -> dict:
    """Trains (or resumes) into ``output_dir``; returns times, final and best metrics
    (and the model itself under ``"model"`` when ``keep_model``)."""
    t = config.trainer
    stats = data_lib.read_stats(examples_dir)
    data_lib.shard_files(examples_dir, "train")  # fail fast, naming the path, if no shards
    data_lib.shard_files(examples_dir, "validation")
    coverage = model_coverage(base_coverage, hparams)
    strategy = choose_strategy(config.runtime.strategy)
    chief = is_chief(strategy)
    if chief:
        tf.io.gfile.makedirs(output_dir)
    batch_size = t.batch_size
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(f"trainer.batch_size: the global batch {batch_size} does not split "
                         f"evenly over {replicas} replicas")
    train_count = stats["splits"]["train"]["count"]
    val_count = stats["splits"]["validation"]["count"]
    steps_per_epoch = t.steps_per_epoch or steps_for(train_count, batch_size)
    validation_steps = t.validation_steps or steps_for(val_count, batch_size)
    steps_per_loop = max(1, min(getattr(t, "steps_per_loop", 20), steps_per_epoch))

    train_ds = data_lib.training_dataset(
        examples_dir, "train", coverage, batch_size, shuffle_buffer=t.shuffle_buffer,
        cache=t.cache_dataset, repeat=True, seed=config.task.data.seed, drop_remainder=True,
        with_operator=True)
    val_ds = data_lib.training_dataset(
        examples_dir, "validation", coverage, batch_size, cache=t.cache_dataset, repeat=True,
        drop_remainder=True, with_operator=True)

    seed_weights(getattr(t, "seed", None))
    with strategy.scope():
        model = compile_model(hparams, coverage, steps_per_epoch * t.epochs, t.lr_schedule)
        model.optimizer.build(model.trainable_variables)
    loop = TrainLoop(model, strategy)

    # Resume state lives in the checkpoint next to the weights and the optimizer.
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_val_exact_match")
    best_loss_var = tf.Variable(math.inf, dtype=tf.float64, trainable=False,
                                name="best_val_loss")
    best_epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
    wait_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_without_gain")
    checkpoint = tf.train.Checkpoint(
        model_variables=checkpointed_variables(model.weights),
        optimizer_variables=checkpointed_variables(model.optimizer.variables),
                                     epoch=epoch_var,
                                     best=best_var, best_loss=best_loss_var,
                                     best_epoch=best_epoch_var, wait=wait_var)
    ckpt_dir = os.path.join(output_dir, "checkpoints")
    patience = getattr(t, "early_stopping_patience", 0)
    saver = _CheckpointWriter(checkpoint, ckpt_dir, chief, max_to_keep=max(3, patience + 2))
    latest = tf.train.latest_checkpoint(ckpt_dir)
    history_path = os.path.join(output_dir, "history.json")
    history: list[dict] = []
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        if tf.io.gfile.exists(history_path):
            with tf.io.gfile.GFile(history_path) as f:
                history = [h for h in json.loads(f.read()) if h["epoch"] <= int(epoch_var.numpy())]
        log.info("Trainer: resumed from %s after epoch %d (optimizer step %d)", latest,
                 int(epoch_var.numpy()), int(model.optimizer.iterations.numpy()))
    start_epoch = int(epoch_var.numpy())

    log_dir = os.path.join(output_dir, "logs")
    train_writer = val_writer = None
    samples = None
    if chief:
        train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
        if start_epoch == 0:
            _trace_graph(model, coverage, train_writer)
        samples = SamplePredictions(examples_dir, coverage, getattr(t, "sample_predictions", 8))

    train_iter = iter(strategy.experimental_distribute_dataset(train_ds))
    val_iter = iter(strategy.experimental_distribute_dataset(val_ds))
    log.info("Trainer: %s; %d examples; epochs %d..%d of %d steps x %d (global batch) on %d "
             "replica(s), %s", hparams, train_count, start_epoch + 1, t.epochs, steps_per_epoch,
             batch_size, replicas, strategy_name(strategy))
    progress_every_s = getattr(t, "progress_every_s", 30.0)
    started = time.time()
    stopped_early = False
    for epoch in range(start_epoch + 1, t.epochs + 1):
        epoch_start = time.time()
        last_report = [epoch_start]

        def progress(done, totals, epoch=epoch):
            now = time.time()
            if now - last_report[0] >= progress_every_s and done < steps_per_epoch:
                last_report[0] = now
                m = metrics_lib.summarize(totals)
                log.info("  epoch %d: step %d/%d, loss %.4f, exact_match %.4f, %.0f examples/s",
                         epoch, done, steps_per_epoch, m["loss"], m["exact_match"],
                         done * batch_size / (now - epoch_start))

        train_sums = loop.train_steps(train_iter, steps_per_epoch, steps_per_loop, progress)
        train_seconds = time.time() - epoch_start
        val_sums = loop.eval_steps(val_iter, validation_steps, steps_per_loop)
        train_m = metrics_lib.summarize(train_sums)
        train_m["learning_rate"] = loop.learning_rate()
        train_m["examples_per_second"] = steps_per_epoch * batch_size / max(train_seconds, 1e-9)
        val_m = metrics_lib.summarize(val_sums)
        _write_scalars(train_writer, train_m, epoch)
        _write_scalars(val_writer, val_m, epoch)
        sample_note = ""
        if samples is not None:
            table, fraction = samples.table(model)
            with val_writer.as_default(step=epoch):
                tf.summary.text("sample_predictions", table)
            val_writer.flush()
            sample_note = f", samples right {fraction:.0%}"
        record = {"epoch": epoch, "seconds": time.time() - epoch_start, **train_m,
                  **{f"val_{k}": v for k, v in val_m.items()}}
        history.append(record)

        # Early stopping on validation exact match (the metric that matters); the kept
        # weights are the best epoch's, ties on exact match broken by the lower val loss.
        gain = val_m["exact_match"] > float(best_var.numpy())
        if is_better_epoch(val_m["exact_match"], val_m["loss"], float(best_var.numpy()),
                           float(best_loss_var.numpy())):
            best_var.assign(val_m["exact_match"])
            best_loss_var.assign(val_m["loss"])
            best_epoch_var.assign(epoch)
        if gain:
            wait_var.assign(0)
        else:
            wait_var.assign_add(1)
        epoch_var.assign(epoch)
        if chief:  # before the checkpoint: a resume drops epochs newer than its checkpoint
            with tf.io.gfile.GFile(history_path, "w") as f:
                f.write(json.dumps(history, indent=1))
        path = saver.save(epoch)
        log.info("epoch %d/%d: %.1fs, loss %.4f, exact_match %.4f, val_loss %.4f, "
                 "val_exact_match %.4f, lr %.2e, %.0f examples/s%s; checkpoint %s", epoch,
                 t.epochs, record["seconds"], train_m["loss"], train_m["exact_match"],
                 val_m["loss"], val_m["exact_match"], train_m["learning_rate"],
                 train_m["examples_per_second"], sample_note, path)
        if patience and int(wait_var.numpy()) >= patience:
            log.info("Trainer: early stop after epoch %d: val_exact_match has not improved on "
                     "%.5f (epoch %d) for %d epochs", epoch, float(best_var.numpy()),
                     int(best_epoch_var.numpy()), patience)
            stopped_early = True
            break
    elapsed = time.time() - started

    best_epoch = int(best_epoch_var.numpy())
    if patience and history and best_epoch != history[-1]["epoch"]:
        if restore_epoch_weights(model, ckpt_dir, best_epoch):
            log.info("Trainer: restored the best epoch's weights (epoch %d, val_exact_match "
                     "%.5f, val_loss %.5f)", best_epoch, float(best_var.numpy()),
                     float(best_loss_var.numpy()))

    if chief:
        model.save(os.path.join(output_dir, "model.keras"))
        with tf.io.gfile.GFile(os.path.join(output_dir, "coverage.json"), "w") as f:
            f.write(json.dumps(coverage, indent=2))
        with tf.io.gfile.GFile(os.path.join(output_dir, "hparams.json"), "w") as f:
            f.write(json.dumps(dataclasses.asdict(hparams), indent=2))
    final = {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}
    log.info("Trainer: done in %.1fs (%d epochs this run%s)", elapsed,
             len(history) - start_epoch if history else 0,
             ", stopped early" if stopped_early else "")
    result = {"train_seconds": elapsed, "final_metrics": final, "log_dir": log_dir,
              "epochs_run": len(history), "best_epoch": best_epoch,
              "best_val_exact_match": float(best_var.numpy()), "stopped_early": stopped_early,
              "strategy": strategy_name(strategy), "replicas": replicas}
    if keep_model:
        result["model"] = model
    return result


def load_trained(model_dir: str):
    """(model, coverage) from a Trainer output directory."""
    import components.metrics  # noqa: F401  (registers custom objects)
    import components.models  # noqa: F401

    model = keras.models.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    with tf.io.gfile.GFile(os.path.join(model_dir, "coverage.json")) as f:
        coverage = json.loads(f.read())
    coverage.setdefault("output_format", getattr(model, "output_format", "left"))
    return model, coverage


# --------------------------------------------------------------------------------------
# `lstm-math train`: the Trainer alone, on one machine or as one worker of a cluster.


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default",
                        help="a preset name (default, smoke, seed, ...) or a YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config field (repeatable)")
    parser.add_argument("--examples", required=True,
                        help="ExampleGen output: shards + stats.json (local path or gfile URL)")
    parser.add_argument("--output", required=True,
                        help="Trainer output (model, checkpoints, logs); rerunning the same "
                             "command resumes from its last checkpoint")
    parser.add_argument("--hparams", help="a best_hyperparameters.json from the Tuner "
                                          "(default: the config's trainer.model)")
    parser.add_argument("-v", "--verbose", action="store_true")


def run_train(args) -> int:
    from pipeline.config import coverage_of, load_config

    config = load_config(args.config, list(args.overrides))
    try:
        data_lib.shard_files(args.examples, "train")
    except data_lib.NoShardsError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.hparams:
        with tf.io.gfile.GFile(args.hparams) as f:
            hparams = ModelHParams(**json.loads(f.read()))
    else:
        hparams = config.trainer.model
    result = run_trainer(config, args.examples, coverage_of(config), hparams, args.output)
    final = result["final_metrics"]
    print(json.dumps({"epochs": result["epochs_run"], "train_seconds": round(result["train_seconds"], 1),
                      "exact_match": final.get("exact_match"),
                      "val_exact_match": final.get("val_exact_match"),
                      "model": os.path.join(args.output, "model.keras")}), flush=True)
    return 0


def main(argv=None) -> int:
    from pipeline.config import ConfigError

    parser = argparse.ArgumentParser(prog="python -m components.trainer",
                                     description="Train one model (the pipeline's Trainer).")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(force=True, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        return run_train(args)
    except (ConfigError, data_lib.NoShardsError) as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
