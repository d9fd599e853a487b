"""``run_trainer``: trains (or resumes) one model into a directory.

Writes, under its output directory:
  model.keras          the trained model (Keras format; custom classes registered)
  coverage.json        what the model covers (operators, range, lengths, output format)
  hparams.json         what it was trained with: {"model": trainer.model, "optimizer":
                       trainer.optimizer} (the Tuner's best_hyperparameters.json format)
  history.json         every epoch's metrics (train and val_*), in order
  logs/train, logs/validation
                       TensorBoard: loss, char_accuracy, exact_match and exact_match/<op>,
                       learning_rate, examples_per_second; sample predictions (text) each
                       epoch; the model graph
  checkpoints/         tf.train.Checkpoint (weights, optimizer, epoch, early-stopping state)
                       after every epoch: the same command, restarted after a crash or a
                       SIGKILL, resumes after the last finished epoch
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import tensorflow as tf

from lstm_math.components import data as data_lib
from lstm_math.components import metrics as metrics_lib
from lstm_math.components.trainer.checkpoints import CheckpointWriter, TrainState, restore_epoch_weights
from lstm_math.components.trainer.loop import TrainLoop, steps_for
from lstm_math.components.trainer.model import (compile_model, finish_stage_steps,
                                                model_coverage, seed_weights,
                                                warm_start_source, warm_start_weights)
from lstm_math.components.trainer.strategy import choose_strategy, is_chief, strategy_name
from lstm_math.components.trainer.summaries import (SamplePredictions, trace_graph, write_best,
                                                   write_hparams, write_scalars)
from lstm_math.config import (MAIN_STAGE_FILE, MODEL_FILE, Coverage, ModelHParams,
                              OptimizerConfig, TrainerConfig)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Plan:
    """The run's shape, from the config and the data's counts."""

    batch_size: int
    replicas: int
    train_count: int
    steps_per_epoch: int
    validation_steps: int
    steps_per_loop: int


def _plan(t: TrainerConfig, examples_dir: str, strategy) -> _Plan:
    stats = data_lib.read_stats(examples_dir)
    data_lib.shard_files(examples_dir, "train")  # fail fast, naming the path, if no shards
    data_lib.shard_files(examples_dir, "validation")
    replicas = strategy.num_replicas_in_sync
    if t.batch_size % replicas:
        raise ValueError(f"trainer.batch_size: the global batch {t.batch_size} does not split "
                         f"evenly over {replicas} replicas")
    train_count = stats["splits"]["train"]["count"]
    val_count = stats["splits"]["validation"]["count"]
    steps_per_epoch = t.steps_per_epoch or steps_for(train_count, t.batch_size)
    return _Plan(batch_size=t.batch_size, replicas=replicas, train_count=train_count,
                 steps_per_epoch=steps_per_epoch,
                 validation_steps=t.validation_steps or steps_for(val_count, t.batch_size),
                 steps_per_loop=max(1, min(t.steps_per_loop, steps_per_epoch)))


def _train_dataset(t: TrainerConfig, examples_dir: str, coverage: Coverage, batch_size: int,
                   shuffle_seed: int, short_share: float, short_operand_digits: int = 0):
    return data_lib.training_dataset(
        examples_dir, "train", coverage, batch_size, shuffle_buffer=t.shuffle_buffer,
        cache=t.cache_dataset, repeat=True, seed=shuffle_seed, drop_remainder=True,
        with_operator=True, short_share=short_share, short_max_chars=t.short_max_chars,
        short_max_digits=short_operand_digits)


def _datasets(t: TrainerConfig, examples_dir: str, coverage: Coverage, batch_size: int,
              shuffle_seed: int):
    train_ds = _train_dataset(t, examples_dir, coverage, batch_size, shuffle_seed,
                              t.short_share)
    val_ds = data_lib.training_dataset(
        examples_dir, "validation", coverage, batch_size, cache=t.cache_dataset, repeat=True,
        drop_remainder=True, with_operator=True)
    return train_ds, val_ds


def _resume(checkpoint, state: TrainState, ckpt_dir: str, history_path: str, model) -> list:
    """Restores the latest checkpoint, if any; returns the history up to its epoch."""
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if not latest:
        return []
    checkpoint.restore(latest).assert_existing_objects_matched()
    history = []
    if tf.io.gfile.exists(history_path):
        with tf.io.gfile.GFile(history_path) as f:
            history = [h for h in json.loads(f.read()) if h["epoch"] <= int(state.epoch.numpy())]
    log.info("Trainer: resumed from %s after epoch %d (optimizer step %d)", latest,
             int(state.epoch.numpy()), int(model.optimizer.iterations.numpy()))
    return history


def _save_outputs(model, output_dir: str, coverage: Coverage, hparams: ModelHParams,
                  optimizer: OptimizerConfig) -> None:
    model.save(os.path.join(output_dir, MODEL_FILE))
    with tf.io.gfile.GFile(os.path.join(output_dir, "coverage.json"), "w") as f:
        f.write(json.dumps(coverage.to_dict(), indent=2))
    with tf.io.gfile.GFile(os.path.join(output_dir, "hparams.json"), "w") as f:
        f.write(json.dumps({"model": dataclasses.asdict(hparams),
                            "optimizer": dataclasses.asdict(optimizer)}, indent=2))


def run_trainer(t: TrainerConfig, examples_dir: str, base_coverage: Coverage,
                hparams: ModelHParams, output_dir: str, keep_model: bool = False,
                optimizer: OptimizerConfig | None = None, *, shuffle_seed: int,
                strategy: str = "auto", warm_start: dict | None = None) -> dict:
    """Trains (or resumes) into ``output_dir`` with the ``trainer`` section ``t``; returns
    times, final and best metrics (and the model itself under ``"model"`` when
    ``keep_model``). ``base_coverage``: the data's (ExampleGen's); ``hparams`` and
    ``optimizer`` (default: ``t.optimizer``) may be a tuner's choice; ``shuffle_seed``
    shuffles the training examples (``task.data.seed``); ``strategy``: ``runtime.strategy``;
    ``warm_start``: ``trainer.warm_start`` resolved (``warm_start_source``; resolved here when
    not given), whose weights a fresh start begins from (a resume restores its own)."""
    optimizer = optimizer or t.optimizer
    coverage = model_coverage(base_coverage, hparams, t.max_result_length)
    strategy = choose_strategy(strategy)
    chief = is_chief(strategy)
    if chief:
        tf.io.gfile.makedirs(output_dir)
    plan = _plan(t, examples_dir, strategy)
    train_ds, val_ds = _datasets(t, examples_dir, coverage, plan.batch_size, shuffle_seed)

    seed_weights(t.seed)
    with strategy.scope():
        model = compile_model(hparams, coverage, plan.steps_per_epoch * t.epochs, optimizer,
                              finish_stage_steps(t.finish, plan.steps_per_epoch))
        model.optimizer.build(model.trainable_variables)
    loop = TrainLoop(model, strategy)

    # Resume state lives in the checkpoint next to the weights and the optimizer.
    state = TrainState()
    checkpoint = state.checkpoint(model)
    ckpt_dir = os.path.join(output_dir, "checkpoints")
    patience = t.early_stopping_patience
    saver = CheckpointWriter(checkpoint, ckpt_dir, chief, max_to_keep=max(3, patience + 2))
    history_path = os.path.join(output_dir, "history.json")
    history = _resume(checkpoint, state, ckpt_dir, history_path, model)
    start_epoch = int(state.epoch.numpy())
    if start_epoch == 0 and t.warm_start:
        source = warm_start or warm_start_source(t.warm_start)
        warm_start_weights(model, source["path"])
        log.info("Trainer: warm start from %s (sha256 %s)", source["path"],
                 source["digest"][:12])

    log_dir = os.path.join(output_dir, "logs")
    train_writer = val_writer = root_writer = samples = None
    if chief:
        # HParams: what this training trains with, under the Tuner's trial names (the group
        # named by this output directory's fingerprint, unique per training)
        root_writer = tf.summary.create_file_writer(log_dir)
        write_hparams(root_writer, dataclasses.asdict(hparams), dataclasses.asdict(optimizer),
                      trial_id=f"trainer {os.path.basename(os.path.normpath(output_dir))[:8]}")
        train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
        if start_epoch == 0:
            trace_graph(model, coverage, train_writer)
        samples = SamplePredictions(examples_dir, coverage, t.sample_predictions)

    total_epochs = t.epochs + t.finish.total_epochs
    # each finishing stage's data from its first epoch in this run (a resume may start
    # there or within it): {epoch: (stage number, its first and last epoch, the stage)}
    stage_starts, first = {}, t.epochs + 1
    for number, stage in enumerate(t.finish.stages(), 1):
        last = first + stage.epochs - 1
        if start_epoch < last:
            stage_starts[max(start_epoch + 1, first)] = (number, first, last, stage)
        first = last + 1
    train_iter = (iter(strategy.experimental_distribute_dataset(train_ds))
                  if start_epoch < t.epochs else None)
    val_iter = iter(strategy.experimental_distribute_dataset(val_ds))
    log.info("Trainer: %s, %s; %d examples; epochs %d..%d of %d steps x %d (global batch) on "
             "%d replica(s), %s", hparams, optimizer, plan.train_count, start_epoch + 1,
             total_epochs, plan.steps_per_epoch, plan.batch_size, plan.replicas,
             strategy_name(strategy))
    started = time.time()
    stopped_early = False
    for epoch in range(start_epoch + 1, total_epochs + 1):
        if epoch in stage_starts:
            # its own share of short draws (the rate is the schedule's)
            number, first, last, stage = stage_starts[epoch]
            stages = len(t.finish.stages())
            digits = stage.short_operand_digits
            log.info("Trainer: finishing stage%s, epochs %d..%d: %.0f%% of each batch %s, "
                     "learning rate from %.2e",
                     f" {number} of {stages}" if stages > 1 else "", first, last,
                     100 * stage.short_share,
                     f"equations of operands up to {digits} digit{'s' if digits > 1 else ''}"
                     if digits else "short equations", stage.learning_rate)
            train_iter = iter(strategy.experimental_distribute_dataset(_train_dataset(
                t, examples_dir, coverage, plan.batch_size, shuffle_seed + number,
                stage.short_share, digits)))
        record = _run_epoch(epoch, loop, train_iter, val_iter, plan, t.progress_every_s)
        sample_note = ""
        if samples is not None:
            table, fraction = samples.table(model)
            with val_writer.as_default(step=epoch):
                tf.summary.text("sample_predictions", table)
            val_writer.flush()
            sample_note = f", samples right {fraction:.0%}"
        write_scalars(train_writer, record["train"], epoch)
        write_scalars(val_writer, record["val"], epoch)
        history.append(record["history"])
        state.end_epoch(epoch, record["val"]["exact_match"], record["val"]["loss"])
        if chief:  # before the checkpoint: a resume drops epochs newer than its checkpoint
            with tf.io.gfile.GFile(history_path, "w") as f:
                f.write(json.dumps(history, indent=1))
        path = saver.save(epoch)
        if chief and t.finish.epochs and epoch == t.epochs:
            # the model the finishing stage starts from: another stage can warm-start from it
            model.save(os.path.join(output_dir, MAIN_STAGE_FILE))
        train_m, val_m = record["train"], record["val"]
        log.info("epoch %d/%d: %.1fs, loss %.4f, exact_match %.4f, val_loss %.4f, "
                 "val_exact_match %.4f, lr %.2e, %.0f examples/s%s; checkpoint %s", epoch,
                 total_epochs, record["history"]["seconds"], train_m["loss"],
                 train_m["exact_match"], val_m["loss"], val_m["exact_match"],
                 train_m["learning_rate"], train_m["examples_per_second"], sample_note, path)
        if patience and int(state.wait.numpy()) >= patience:
            log.info("Trainer: early stop after epoch %d: val_exact_match has not improved on "
                     "%.5f (epoch %d) for %d epochs", epoch, float(state.best.numpy()),
                     int(state.best_epoch.numpy()), patience)
            stopped_early = True
            break
    elapsed = time.time() - started

    best_epoch = int(state.best_epoch.numpy())
    if patience and history and best_epoch != history[-1]["epoch"]:
        if restore_epoch_weights(model, ckpt_dir, best_epoch):
            log.info("Trainer: restored the best epoch's weights (epoch %d, val_exact_match "
                     "%.5f, val_loss %.5f)", best_epoch, float(state.best.numpy()),
                     float(state.best_loss.numpy()))
    if chief:
        _save_outputs(model, output_dir, coverage, hparams, optimizer)
        if history:
            write_best(root_writer, float(state.best.numpy()))
    final = {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}
    log.info("Trainer: done in %.1fs (%d epochs this run%s)", elapsed,
             len(history) - start_epoch if history else 0,
             ", stopped early" if stopped_early else "")
    # a resumed training's time is its epochs' time before the resume plus this run's
    earlier = sum(float(h.get("seconds", 0.0)) for h in history[:start_epoch])
    result = {"train_seconds": earlier + elapsed, "train_seconds_this_run": elapsed,
              "resumed_after_epoch": start_epoch, "final_metrics": final, "log_dir": log_dir,
              "epochs_run": len(history), "best_epoch": best_epoch,
              "best_val_exact_match": float(state.best.numpy()), "stopped_early": stopped_early,
              "strategy": strategy_name(strategy), "replicas": plan.replicas}
    if keep_model:
        result["model"] = model
    return result


def _run_epoch(epoch: int, loop: TrainLoop, train_iter, val_iter, plan: _Plan,
               progress_every_s: float) -> dict:
    """One epoch of training and validation: {"train": ..., "val": ..., "history": row}."""
    epoch_start = time.time()
    last_report = [epoch_start]

    def progress(done, totals):
        now = time.time()
        if now - last_report[0] >= progress_every_s and done < plan.steps_per_epoch:
            last_report[0] = now
            m = metrics_lib.summarize(totals)
            log.info("  epoch %d: step %d/%d, loss %.4f, exact_match %.4f, %.0f examples/s",
                     epoch, done, plan.steps_per_epoch, m["loss"], m["exact_match"],
                     done * plan.batch_size / (now - epoch_start))

    train_sums = loop.train_steps(train_iter, plan.steps_per_epoch, plan.steps_per_loop,
                                  progress)
    train_seconds = time.time() - epoch_start
    val_sums = loop.eval_steps(val_iter, plan.validation_steps, plan.steps_per_loop)
    train_m = metrics_lib.summarize(train_sums)
    train_m["learning_rate"] = loop.learning_rate()
    train_m["examples_per_second"] = (plan.steps_per_epoch * plan.batch_size
                                      / max(train_seconds, 1e-9))
    val_m = metrics_lib.summarize(val_sums)
    row = {"epoch": epoch, "seconds": time.time() - epoch_start, **train_m,
           **{f"val_{k}": v for k, v in val_m.items()}}
    return {"train": train_m, "val": val_m, "history": row}
