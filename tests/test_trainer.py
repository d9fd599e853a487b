"""Trainer: tf.data input, the custom training loop, metrics, TensorBoard, resume, errors."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lstm_math.components import data as data_lib
from lstm_math.components import metrics as metrics_lib
from lstm_math.components import tokenizer
from lstm_math.components.trainer import model_coverage, run_trainer
from lstm_math.config import ConfigError, coverage_of, load_config

from tests.helpers import REPO, trainer_kwargs

TINY = ["task.data.operand_max=99", "task.data.num_examples=2000", "task.data.num_shards=2",
        "task.data.operators=['+', '-']", "trainer.model.embedding_dim=8",
        "trainer.model.encoder_units=16", "trainer.model.decoder_units=16",
        "trainer.batch_size=64", "trainer.shuffle_buffer=500", "tuner.enabled=false",
        "trainer.early_stopping_patience=0"]


def tiny_config(*extra):
    return load_config("smoke", TINY + list(extra))


@pytest.fixture(scope="module")
def examples(examples_for):
    return examples_for("smoke", *TINY)


def test_training_dataset_yields_the_shards_tokenized(examples):
    config = tiny_config()
    coverage = coverage_of(config)
    ds = data_lib.training_dataset(examples, "validation", coverage, 50, with_operator=True)
    features = next(iter(data_lib.features_dataset(examples, "validation", 50)))
    (enc, dec_in), targets, ops = next(iter(ds))
    assert enc.shape == (50, coverage.max_input_length)
    assert targets.shape == dec_in.shape == (50, coverage.max_result_length + 1)
    # same order, same equations: the targets decode back to the stored results
    decoded = tokenizer.decode_results(targets, coverage.reverse_output).numpy()
    assert decoded.tolist() == features["result"].numpy().tolist()
    tags = [metrics_lib.OPERATOR_TAGS[i] for i in ops.numpy()]
    assert tags == [t.decode() for t in features["operator"].numpy()]
    assert set(tags) <= {"+", "-"}
    # every record of the split, exactly once, when not repeating
    count = sum(int(b[1].shape[0]) for b in data_lib.training_dataset(
        examples, "validation", coverage, 64))
    assert count == data_lib.read_stats(examples)["splits"]["validation"]["count"]


def test_short_share_draws_that_share_of_every_batch_from_short_equations(examples):
    """trainer.short_share: that share of every training batch (rounded) is drawn again
    from the split's short equations (at most short_max_chars characters, whitespace
    removed), each one once a pass over them; the rest of the batch is the split as before."""
    coverage = coverage_of(tiny_config())
    features = data_lib.features_dataset(examples, "train", 512)
    lengths = np.concatenate([tf.strings.length(tokenizer.compact(f["equation"])).numpy()
                              for f in features])
    natural = float(np.mean(lengths <= 3))  # '4+9': single-digit operands
    assert 0 < natural < 0.2
    short = [e.numpy() for e in data_lib.short_records(examples, "train", 3)]
    assert len(short) == int(np.sum(lengths <= 3))  # every short record, once
    batches = list(data_lib.training_dataset(examples, "train", coverage, 64,
                                             shuffle_buffer=500, repeat=True, seed=3,
                                             short_share=0.3, short_max_chars=3).take(40))
    short_rows = [np.sum(b[0][0].numpy() != tokenizer.PAD_ID, axis=1) <= 3 for b in batches]
    assert all(len(rows) == 64 for rows in short_rows)
    assert all(rows[-19:].all() for rows in short_rows)  # round(0.3 x 64) drawn again
    rest = np.concatenate([rows[:-19] for rows in short_rows])
    assert abs(float(np.mean(rest)) - natural) < 0.06, (np.mean(rest), natural)
    drawn = np.concatenate([b[0][0].numpy()[-19:] for b in batches])
    short_equations = {tf.io.parse_single_example(e, {"equation": data_lib.FEATURES[
        "equation"]})["equation"].numpy() for e in short}
    # 760 draws in order: three whole passes over the 200 short equations, each one once
    assert len(short_equations) == 200
    for start in (0, 200, 400):
        assert len({row.tobytes() for row in drawn[start:start + 200]}) == 200


def test_short_draws_by_operand_digits_are_every_equation_of_short_operands(examples_for):
    """A finishing stage's short_operand_digits: the pool is the equations whose every
    operand has at most that many digits, whatever their length; by characters, two and
    three operands at most 5 long are mostly two-digit pairs ('12+34')."""
    import re

    mixed = examples_for("smoke", *TINY, "task.data.num_operands=3",
                         "task.data.min_operands=2", "task.data.operators=['+', '-', '*']")
    equations = [e.decode() for f in data_lib.features_dataset(mixed, "train", 512)
                 for e in tokenizer.compact(f["equation"]).numpy()]

    def pool(**kwargs):
        records = data_lib.short_records(mixed, "train", **kwargs)
        return sorted(tokenizer.compact(tf.io.parse_single_example(
            r, {"equation": data_lib.FEATURES["equation"]})["equation"]).numpy().decode()
            for r in records)

    def widest(equation):
        return max(len(operand) for operand in re.split(r"[-+*/]", equation) if operand)

    single = pool(max_chars=5, max_digits=1)
    assert single == sorted(e for e in equations if widest(e) == 1)
    assert {len(re.findall(r"[-+*/]", e)) for e in single} == {1, 2}  # '7*6' and '1+2*3'
    by_chars = pool(max_chars=5)
    assert any(widest(e) == 2 for e in by_chars) and len(by_chars) > len(single)
    assert pool(max_chars=3, max_digits=2) == sorted(equations)  # operands up to 99


@pytest.mark.parametrize("share,batch,draws", [(0.1, 256, 26), (0.3, 64, 19), (0.5, 8, 4),
                                               (0.01, 8, 1), (0.0, 256, 0)])
def test_short_draws_per_batch(share, batch, draws):
    from lstm_math.config.training import short_draws

    assert short_draws(share, batch) == draws


def test_short_share_is_validated_naming_the_field():
    with pytest.raises(ConfigError, match="trainer.short_share"):
        tiny_config("trainer.short_share=1.0")
    # a batch the short draws would fill: named, with the batch size to raise
    with pytest.raises(ConfigError, match=r"^trainer.short_share: 0.9 of a batch of 4 is 4 "
                                          r"short draws.*trainer.batch_size"):
        tiny_config("trainer.short_share=0.9", "trainer.batch_size=4")
    tiny_config("trainer.short_share=0.9", "trainer.batch_size=8")
    with pytest.raises(ConfigError, match="trainer.short_max_chars"):
        tiny_config("trainer.short_max_chars=2")


@pytest.mark.parametrize("overrides,shortest", [
    (["task.data.num_operands=3"], 5),                                  # '1+2*3'
    (["task.data.operand_min=10", "evaluator.small_operands_threshold=null"], 5),  # '10+10'
    (["task.data.operand_min=100", "task.data.operand_max=999", "task.data.num_operands=3",
      "evaluator.small_operands_threshold=null"], 11)])                 # '100+100+100'
def test_short_draws_that_no_equation_could_fill_fail_fast(overrides, shortest):
    """Short draws from a pool no equation of the task can enter would silently train on
    the sample alone: the config names trainer.short_max_chars and the shortest length."""
    from lstm_math.config import load_config

    base = ["trainer.short_share=0.1", "task.data.operand_max=99"] + overrides
    with pytest.raises(ConfigError, match=rf"^trainer.short_max_chars: {shortest - 1} .*"
                                          rf"has {shortest}\)"):
        load_config("default", base + [f"trainer.short_max_chars={shortest - 1}"])
    load_config("default", base + [f"trainer.short_max_chars={shortest}"])
    load_config("default", base + ["trainer.short_share=0", "trainer.short_max_chars=3"])
    # two to three operands: the two-operand '1+2' fits in 3
    load_config("default", ["trainer.short_share=0.1", "task.data.num_operands=3",
                            "task.data.min_operands=2", "trainer.short_max_chars=3"])


def test_training_dataset_reads_gfile_urls(examples):
    url = "ram://lstm_math_trainer_test/examples"
    tf.io.gfile.makedirs(url)
    for path in glob.glob(os.path.join(examples, "*")):
        tf.io.gfile.copy(path, f"{url}/{os.path.basename(path)}", overwrite=True)
    coverage = coverage_of(tiny_config())
    local = next(iter(data_lib.training_dataset(examples, "train", coverage, 32)))
    remote = next(iter(data_lib.training_dataset(url, "train", coverage, 32)))
    np.testing.assert_array_equal(local[0][0].numpy(), remote[0][0].numpy())
    np.testing.assert_array_equal(local[1].numpy(), remote[1].numpy())


def test_no_shards_is_a_clear_error(tmp_path, examples):
    with pytest.raises(data_lib.NoShardsError, match="stats.json"):
        data_lib.read_stats(str(tmp_path))
    empty = tmp_path / "no_shards"
    empty.mkdir()
    (empty / "stats.json").write_text(open(os.path.join(examples, "stats.json")).read())
    with pytest.raises(data_lib.NoShardsError, match="no 'train' shards under"):
        run_trainer(tiny_config().trainer, str(empty), coverage_of(tiny_config()),
                    tiny_config().trainer.model, str(tmp_path / "out"),
                    **trainer_kwargs(tiny_config()))
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "lstm_math.pipeline.cli", "train", "--config", "smoke",
                           "--examples", str(empty), "--output", str(tmp_path / "out2")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no 'train' shards under" in proc.stderr


def test_inconsistent_config_names_the_field():
    with pytest.raises(ConfigError) as e:
        tiny_config("trainer.max_result_length=2")
    assert str(e.value).startswith("trainer.max_result_length:")
    assert "up to 3 characters" in str(e.value)
    with pytest.raises(ConfigError) as e:
        tiny_config("trainer.model.family=seed", "trainer.model.reverse_output=true")
    assert str(e.value).startswith("trainer.model.reverse_output:")
    with pytest.raises(ConfigError) as e:
        tiny_config("trainer.early_stopping_patience=-1")
    assert str(e.value).startswith("trainer.early_stopping_patience:")
    # a longer field than needed is fine and reaches the coverage (the serving contract)
    assert coverage_of(tiny_config("trainer.max_result_length=5")).max_result_length == 5


def _scalars_and_texts(log_dir):
    from tensorboard.backend.event_processing import event_accumulator

    tags, texts, graph = set(), [], set()
    for sub in ("train", "validation"):
        acc = event_accumulator.EventAccumulator(os.path.join(log_dir, sub),
                                                 size_guidance={"tensors": 0})
        acc.Reload()
        tags |= {f"{sub}/{t}" for t in acc.Tags()["tensors"]}
        for event in acc.Tensors("sample_predictions") if "sample_predictions" in acc.Tags()[
                "tensors"] else []:
            texts.append(tf.make_ndarray(event.tensor_proto).item().decode())
        if acc.Tags()["graph"]:  # the Graphs tab: the forward pass's function graph
            graph |= {n.name for n in acc.Graph().node}
    return tags, texts, graph


def test_training_learns_logs_tensorboard_and_resumes(examples, tmp_path, caplog):
    caplog.set_level("INFO")
    out = str(tmp_path / "trainer")
    config = tiny_config("trainer.epochs=2", "trainer.optimizer.learning_rate=0.01",
                         "trainer.optimizer.schedule=constant", "trainer.sample_predictions=4")
    hparams = config.trainer.model
    first = run_trainer(config.trainer, examples, coverage_of(config), hparams, out,
                        **trainer_kwargs(config))
    assert first["epochs_run"] == 2 and first["strategy"] == "_DefaultDistributionStrategy"
    history = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]  # it learns
    for key in ("loss", "char_accuracy", "exact_match", "exact_match/+", "exact_match/-",
                "learning_rate", "examples_per_second", "val_exact_match",
                "val_exact_match/+", "val_exact_match/-"):
        assert key in history[-1], key
    assert history[-1]["learning_rate"] == pytest.approx(0.01)
    assert sorted(os.listdir(os.path.join(out, "checkpoints")))[:1] == ["checkpoint"]
    assert os.path.exists(os.path.join(out, "checkpoints", "ckpt-2.index"))
    tags, texts, graph = _scalars_and_texts(os.path.join(out, "logs"))
    for tag in ("train/loss", "train/char_accuracy", "train/exact_match", "train/exact_match/+",
                "train/exact_match/-", "train/learning_rate", "train/examples_per_second",
                "validation/loss", "validation/exact_match", "validation/exact_match/+"):
        assert tag in tags, (tag, sorted(tags))
    assert len(texts) == 2 and "| equation | target | prediction | right |" in texts[0]
    assert texts[0].count("\n| `") == 4
    # the model's layers as groups of ops at the top (not one opaque call), written once
    scopes = {name.split("/")[0] for name in graph if "/" in name}  # layer/.../op
    for layer in ("embedding", "encoder_0", "bridge_h", "decoder", "attention_query",
                  "combine", "logits"):  # Keras suffixes a layer's scope with _1 on a retrace
        assert scopes & {layer, f"{layer}_1"}, (layer, sorted(scopes))

    # Same command with more epochs: resumes after epoch 2, does not start again at 1.
    caplog.clear()
    config3 = tiny_config("trainer.epochs=3", "trainer.optimizer.learning_rate=0.01",
                          "trainer.optimizer.schedule=constant", "trainer.sample_predictions=4")
    second = run_trainer(config3.trainer, examples, coverage_of(config3), hparams, out,
                         keep_model=True, **trainer_kwargs(config3))
    assert "resumed from" in caplog.text and "after epoch 2 (optimizer step" in caplog.text
    assert "epoch 1/3" not in caplog.text and "epoch 3/3" in caplog.text
    assert [h["epoch"] for h in json.load(open(os.path.join(out, "history.json")))] == [1, 2, 3]
    steps = -(-data_lib.read_stats(examples)["splits"]["train"]["count"] // 64)
    assert int(second["model"].optimizer.iterations.numpy()) == 3 * steps
    # its training time counts the first two epochs too, not only this run's one
    assert second["resumed_after_epoch"] == 2 and first["resumed_after_epoch"] == 0
    earlier = sum(h["seconds"] for h in history)
    assert second["train_seconds"] == pytest.approx(earlier + second["train_seconds_this_run"])


@pytest.mark.parametrize("family", ["attention", "transformer", "seed"])
def test_training_exact_match_is_the_served_exact_match(examples, tmp_path, family):
    """The loop's exact match (argmax of every target position) counts exactly the answers
    the exported string signature gets right, for both output formats."""
    from lstm_math.components.signature import build_serving_function

    extra = ["trainer.epochs=8" if family == "attention" else "trainer.epochs=20",
             "trainer.optimizer.schedule=constant", "trainer.seed=1",
             "trainer.optimizer.learning_rate=0.01", "trainer.sample_predictions=0"]
    if family == "seed":
        extra += ["trainer.model.family=seed", "trainer.model.reverse_output=false"]
    if family == "transformer":
        extra += ["trainer.model.family=transformer", "trainer.model.attention_heads=2"]
    config = tiny_config(*extra)
    result = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model,
                         str(tmp_path / family), keep_model=True, **trainer_kwargs(config))
    model = result["model"]
    coverage = model_coverage(coverage_of(config), config.trainer.model)
    assert coverage.output_format == ("right_aligned" if family == "seed" else "left")
    # the training split: ~1,400 rows, enough right answers after a few epochs to compare
    features = next(iter(data_lib.features_dataset(examples, "train", 10_000)))
    inputs, targets = data_lib.to_model_inputs(features, coverage)
    scores = model(inputs, training=False)
    sums = metrics_lib.batch_sums(targets, scores, model.from_logits)
    served = build_serving_function(model, coverage)(features["equation"])
    answers = served["result"].numpy()
    assert all(b" " not in a for a in answers)
    right = int(np.sum(answers == features["result"].numpy()))
    assert right == int(sums["answers_right"])
    if family == "seed":
        # all positions at once: the served strings are the decoded argmax, row by row
        argmax = tf.argmax(scores, axis=-1, output_type=tf.int32)
        decoded = tokenizer.decode_results(argmax, False).numpy()
        assert answers.tolist() == decoded.tolist()
        assert len(set(answers.tolist())) > 1
    else:
        assert right > 0  # attention, 8 epochs: 10-34 of ~1,400 right in 12 runs (seeded init)


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_from_last_checkpoint(examples, tmp_path):
    """A real SIGKILL mid-run; the same command again continues after the last finished
    epoch (no restart from epoch 1) and finishes the run."""
    import signal
    import time

    out = tmp_path / "trainer"
    cmd = [sys.executable, "-m", "lstm_math.pipeline.cli", "train", "--config", "smoke",
           "--examples", examples, "--output", str(out)]
    for override in TINY + ["trainer.epochs=8", "trainer.steps_per_loop=2",
                            "trainer.sample_predictions=2"]:
        cmd += ["--set", override]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log_file:
        first = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                 cwd=REPO)
        try:
            deadline = time.time() + 300
            # the "epoch 2/8" line is logged once the checkpoint is committed (CheckpointManager
            # writes ckpt-2.index before it points the `checkpoint` file at it: a kill in
            # between rightly resumes from ckpt-1, so the index file is not the signal)
            while "epoch 2/8" not in open(log_path).read():
                assert first.poll() is None, open(log_path).read()[-3000:]
                assert time.time() < deadline, "no checkpoint for epoch 2 in time"
                time.sleep(0.2)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
    assert first.returncode == -signal.SIGKILL
    first_log = open(log_path).read()
    assert "epoch 8/8" not in first_log  # it really died before the end
    killed_after = max(int(n) for n in __import__("re").findall(r"epoch (\d)/8", first_log))

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert second.returncode == 0, second.stderr[-4000:]
    log = second.stderr
    resumed = int(__import__("re").search(r"resumed from .*ckpt-(\d+) after epoch (\d+)",
                                          log).group(2))
    assert resumed >= 2 and resumed >= killed_after
    assert "epoch 1/8" not in log and "epoch 8/8" in log
    assert f"epoch {resumed + 1}/8" in log
    history = json.load(open(out / "history.json"))
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert json.loads(second.stdout.strip().splitlines()[-1])["epochs"] == 8
    assert (out / "model.keras").exists()


def test_best_epoch_is_the_highest_exact_match_then_the_lowest_loss():
    from lstm_math.components.trainer import is_better_epoch
    assert is_better_epoch(0.5, 9.0, 0.4, 0.1)          # more right answers win
    assert not is_better_epoch(0.4, 0.01, 0.5, 9.0)     # whatever the loss
    assert is_better_epoch(1.0, 0.001, 1.0, 0.002)      # saturated: the lower loss
    assert not is_better_epoch(1.0, 0.002, 1.0, 0.002)  # a tie keeps the earlier epoch
    assert is_better_epoch(0.0, 5.0, -1.0, float("inf"))  # the first epoch


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience(examples, tmp_path):
    """Stops `patience` epochs after the last exact-match gain; the saved model holds the
    best epoch's weights (exact match first, then loss), not the last epoch's."""
    config = tiny_config("trainer.epochs=12", "trainer.early_stopping_patience=2",
                         "trainer.optimizer.schedule=constant", "trainer.optimizer.learning_rate=0.05",
                         "trainer.seed=3", "trainer.sample_predictions=0")
    out = str(tmp_path / "t")
    result = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model, out,
                         keep_model=True, **trainer_kwargs(config))
    history = json.load(open(os.path.join(out, "history.json")))
    ranked = max(history, key=lambda h: (h["val_exact_match"], -h["val_loss"]))
    assert result["best_epoch"] == ranked["epoch"]
    gains, best = [], -1.0
    for h in history:
        if h["val_exact_match"] > best:
            gains.append(h["epoch"])
            best = h["val_exact_match"]
    if result["stopped_early"]:
        assert history[-1]["epoch"] - gains[-1] == 2
    else:
        assert len(history) == 12
    # the returned (and saved) model holds the best epoch's checkpointed weights
    from lstm_math.components.trainer import checkpointed_variables, compile_model
    coverage = model_coverage(coverage_of(config), config.trainer.model)
    best = compile_model(config.trainer.model, coverage, 10)
    status = tf.train.Checkpoint(model_variables=checkpointed_variables(best.weights)).read(
        os.path.join(out, "checkpoints", f"ckpt-{result['best_epoch']}"))
    status.assert_existing_objects_matched()  # every weight of the model was in it
    for saved, expected in zip(result["model"].weights, best.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), expected.numpy())


def test_restoring_an_epoch_restores_every_weight(examples, tmp_path):
    """What the best-epoch restore relies on: an earlier epoch's checkpoint brings back all
    weights (LSTMs included), not only the Dense layers."""
    from lstm_math.components.trainer import restore_epoch_weights
    config = tiny_config("trainer.epochs=2", "trainer.sample_predictions=0")
    out = str(tmp_path / "t")
    model = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model, out,
                        keep_model=True, **trainer_kwargs(config))["model"]
    last = [w.numpy() for w in model.weights]
    assert restore_epoch_weights(model, os.path.join(out, "checkpoints"), 1)
    reader = tf.train.load_checkpoint(os.path.join(out, "checkpoints", "ckpt-1"))
    for i, w in enumerate(model.weights):
        np.testing.assert_array_equal(w.numpy(), reader.get_tensor(
            f"model_variables/v{i:04d}/.ATTRIBUTES/VARIABLE_VALUE"))
    lstm = [i for i, w in enumerate(model.weights) if "lstm" in w.path]
    assert lstm and all(not np.array_equal(model.weights[i].numpy(), last[i]) for i in lstm)
    assert not restore_epoch_weights(model, os.path.join(out, "checkpoints"), 7)


def test_checkpoints_hold_every_weight_and_optimizer_slot(examples, tmp_path):
    """A resume must restore the LSTM weights too, not only the Dense layers."""
    config = tiny_config("trainer.epochs=1", "trainer.sample_predictions=0")
    out = str(tmp_path / "t")
    result = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model, out,
                         keep_model=True, **trainer_kwargs(config))
    model = result["model"]
    reader = tf.train.load_checkpoint(os.path.join(out, "checkpoints", "ckpt-1"))
    saved = {k.split("/")[1]: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
             if k.startswith("model_variables/")}
    assert len(saved) == len(model.weights)
    assert any("lstm" in w.path for w in model.weights)
    for i, w in enumerate(model.weights):
        np.testing.assert_array_equal(saved[f"v{i:04d}"], w.numpy())
    slots = [k for k in reader.get_variable_to_shape_map() if k.startswith("optimizer_variables/")]
    assert len(slots) == len(model.optimizer.variables)


def test_a_warm_start_begins_from_the_trained_weights_and_a_resume_keeps_its_own(
        examples, tmp_path, caplog):
    """trainer.warm_start: a fresh training starts from another Trainer's weights (its first
    epoch's validation is that model's, not a fresh model's); the optimizer starts anew; a
    different architecture is refused naming the field, before any weight is assigned."""
    caplog.set_level("INFO")
    base = ["trainer.optimizer.learning_rate=0.01", "trainer.optimizer.schedule=constant",
            "trainer.sample_predictions=0", "trainer.seed=3"]
    config = tiny_config("trainer.epochs=3", *base)
    source_dir = str(tmp_path / "source")
    source = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model,
                         source_dir, keep_model=True, **trainer_kwargs(config))
    trained = [w.numpy() for w in source["model"].weights]

    # a tiny learning rate: the warm-started model is the source model, barely moved
    warm = tiny_config("trainer.epochs=1", "trainer.optimizer.learning_rate=1e-9",
                       *base[1:], f"trainer.warm_start={source_dir}")
    out = run_trainer(warm.trainer, examples, coverage_of(warm), warm.trainer.model,
                      str(tmp_path / "warm"), keep_model=True, **trainer_kwargs(warm))
    assert "warm start from " + os.path.join(source_dir, "model.keras") in caplog.text
    assert all(np.allclose(a, w.numpy(), atol=1e-5)
               for a, w in zip(trained, out["model"].weights))
    assert int(out["model"].optimizer.iterations.numpy()) > 0  # its own optimizer, stepped
    # its first validation is about the source's last (same weights, other batches),
    # well below a fresh model's after one epoch
    source_history = json.load(open(os.path.join(source_dir, "history.json")))
    warm_first = json.load(open(str(tmp_path / "warm" / "history.json")))[0]
    assert warm_first["val_loss"] == pytest.approx(source_history[-1]["val_loss"], rel=0.01)
    assert warm_first["val_loss"] < source_history[0]["val_loss"] - 0.1

    # a resume restores its own checkpoint, not the warm start's weights
    caplog.clear()
    more = tiny_config("trainer.epochs=2", *base, f"trainer.warm_start={source_dir}")
    run_trainer(more.trainer, examples, coverage_of(more), more.trainer.model,
                str(tmp_path / "warm"), **trainer_kwargs(more))
    assert "resumed from" in caplog.text and "warm start from" not in caplog.text

    other = tiny_config("trainer.epochs=1", "trainer.model.decoder_units=24",
                        f"trainer.warm_start={source_dir}/model.keras")
    with pytest.raises(ConfigError, match=r"^trainer\.warm_start: weight \d+ .* same architecture"):
        run_trainer(other.trainer, examples, coverage_of(other), other.trainer.model,
                    str(tmp_path / "other"), **trainer_kwargs(other))
    with pytest.raises(ConfigError, match=r"^trainer\.warm_start: no model at "):
        run_trainer(tiny_config(f"trainer.warm_start={tmp_path}/none").trainer, examples,
                    coverage_of(config), config.trainer.model, str(tmp_path / "none"),
                    **trainer_kwargs(config))


def test_a_warm_start_onto_a_longer_working_keeps_the_trained_step_rows(tmp_path):
    """A model warm-started onto a longer decoder (a longer working format) takes every
    trained weight, its step embedding's rows for the steps both have, and keeps its own
    rows for the new steps; a shorter decoder is refused naming the field."""
    from lstm_math.components.models import build_model
    from lstm_math.components.trainer.model import warm_start_weights
    from lstm_math.config.training import ModelHParams

    hparams = ModelHParams(embedding_dim=8, encoder_units=8, decoder_units=16,
                           step_embedding=True)

    def built(steps):
        model = build_model(hparams, steps)
        model((tf.zeros([1, 5], tf.int32), tf.zeros([1, steps], tf.int32)))
        return model

    tf.keras.utils.set_random_seed(1)
    trained = built(6)
    file = str(tmp_path / "model.keras")
    trained.save(file)
    tf.keras.utils.set_random_seed(2)
    longer = built(10)
    (table,) = [w for w in longer.weights if "step_embedding" in w.path]
    fresh_rows = table.numpy()[6:]
    warm_start_weights(longer, file)
    for a, b in zip(trained.weights, longer.weights):
        if b is table:
            np.testing.assert_array_equal(b.numpy()[:6], a.numpy())
            np.testing.assert_array_equal(b.numpy()[6:], fresh_rows)
        else:
            np.testing.assert_array_equal(b.numpy(), a.numpy())
    with pytest.raises(ConfigError, match=r"^trainer\.warm_start: weight \d+ .*step_embedding"
                                          r".* \(6, 8\) here"):
        warm_start_weights(built(6), str(_saved(longer, tmp_path / "longer.keras")))


def _saved(model, path):
    model.save(str(path))
    return path


class _Shares(list):
    """Short shares, in order; ``digits``: each one's short_max_digits (0: by characters)."""

    def __init__(self):
        super().__init__()
        self.digits = []


@pytest.fixture
def shares(monkeypatch):
    """The short share of every training dataset the Trainer builds, in order (and
    ``shares.digits``, the operand digits its short draws are limited to)."""
    recorded = _Shares()
    real = data_lib.training_dataset

    def recording(*args, **kwargs):
        if args[1] == "train":
            recorded.append(kwargs.get("short_share", 0.0))
            recorded.digits.append(kwargs.get("short_max_digits", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(data_lib, "training_dataset", recording)
    return recorded


def test_a_finishing_stage_trains_more_epochs_on_its_own_mix_and_rate(
        examples, tmp_path, caplog, shares):
    """trainer.finish: after trainer.epochs, finish.epochs more, each batch drawing
    finish.short_share from the short equations, the rate started again from
    finish.learning_rate and decaying; the weights carry on (no new optimizer); a resume in
    the stage stays in it."""
    caplog.set_level("INFO")
    base = ["trainer.optimizer.learning_rate=0.01", "trainer.optimizer.schedule=constant",
            "trainer.sample_predictions=0", "trainer.short_share=0.05",
            "trainer.finish.short_share=0.3", "trainer.finish.learning_rate=0.004"]
    config = tiny_config("trainer.epochs=1", "trainer.finish.epochs=2", *base)
    out = str(tmp_path / "trainer")
    first = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model,
                        out, keep_model=True, **trainer_kwargs(config))
    history = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in history] == [1, 2, 3] and first["epochs_run"] == 3
    assert shares == [0.05, 0.3]  # the main stage's draws, then the stage's own
    assert "finishing stage, epochs 2..3: 30% of each batch short equations" in caplog.text
    assert "epoch 3/3" in caplog.text
    steps = -(-data_lib.read_stats(examples)["splits"]["train"]["count"] // 64)
    assert int(first["model"].optimizer.iterations.numpy()) == 3 * steps  # one optimizer
    # the rate after each epoch (the next step's): the stage's start, half-way through its
    # cosine (from 0.004 to 2% of it), its end
    rates = [h["learning_rate"] for h in history]
    assert rates == pytest.approx([0.004, 0.004 * (0.02 + 0.98 * 0.5), 0.004 * 0.02], rel=0.02)

    # the model the stage started from is kept: epoch 1's weights, not the final ones, and a
    # warm start takes it (another finishing stage without the main epochs again)
    import keras

    from lstm_math.components.trainer import restore_epoch_weights
    from lstm_math.components.trainer.model import warm_start_source
    from lstm_math.config import MAIN_STAGE_FILE
    main_stage = os.path.join(out, MAIN_STAGE_FILE)
    kept = keras.models.load_model(main_stage, compile=False).get_weights()
    final = first["model"].get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(kept, final))
    assert restore_epoch_weights(first["model"], os.path.join(out, "checkpoints"), 1)
    for a, b in zip(kept, first["model"].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert warm_start_source(main_stage)["path"] == main_stage

    # one more epoch of the stage: resumes after epoch 3 and stays in the stage
    caplog.clear()
    shares.clear()
    more = tiny_config("trainer.epochs=1", "trainer.finish.epochs=3", *base)
    kept_digest = warm_start_source(main_stage)["digest"]
    run_trainer(more.trainer, examples, coverage_of(more), more.trainer.model, out,
                **trainer_kwargs(more))
    assert warm_start_source(main_stage)["digest"] == kept_digest  # not written again
    assert "after epoch 3" in caplog.text and "epoch 4/4" in caplog.text
    assert shares[-1] == 0.3 and "finishing stage, epochs 2..4" in caplog.text
    assert [h["epoch"] for h in json.load(open(os.path.join(out, "history.json")))] == [
        1, 2, 3, 4]


@pytest.mark.parametrize("field,value", [("epochs", -1), ("epochs", 1.5),
                                         ("short_share", 1.0), ("short_share", -0.1),
                                         ("learning_rate", 0), ("learning_rate", "fast")])
def test_a_bad_finishing_stage_fails_fast_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^trainer\.finish\.{field}: "):
        tiny_config(f"trainer.finish.{field}={value}")


def test_a_finishing_stage_that_leaves_no_record_of_the_batch_is_refused():
    with pytest.raises(ConfigError, match=r"^trainer\.finish\.short_share: 0.9 of a batch of 4"):
        tiny_config("trainer.finish.epochs=1", "trainer.finish.short_share=0.9",
                    "trainer.batch_size=4")
    tiny_config("trainer.finish.epochs=0", "trainer.finish.short_share=0.9",
                "trainer.batch_size=4")  # off: not checked
    # early stopping would end the run before the stage, or keep an epoch before it
    with pytest.raises(ConfigError, match=r"^trainer\.finish\.epochs: .*early_stopping_patience 3"):
        tiny_config("trainer.finish.epochs=2", "trainer.early_stopping_patience=3")


def test_the_finishing_schedule_is_saved_and_loaded_with_the_model(tmp_path):
    """The Trainer's model.keras holds its optimizer: a model compiled with a finishing stage
    loads back with the same rate at every step."""
    import keras

    from lstm_math.components.trainer import compile_model, model_coverage
    from lstm_math.components.trainer.model import FinishStage, finish_stage_steps

    config = tiny_config("trainer.finish.epochs=2")
    hp = config.trainer.model
    model = compile_model(hp, model_coverage(coverage_of(config), hp), 100,
                          config.trainer.optimizer, finish_stage_steps(config.trainer.finish, 20))
    schedule = model.optimizer.learning_rate_schedule if hasattr(
        model.optimizer, "learning_rate_schedule") else model.optimizer._learning_rate
    assert isinstance(schedule, FinishStage)
    peak = config.trainer.optimizer.learning_rate
    assert float(schedule(0)) == pytest.approx(peak)
    assert float(schedule(99)) < 0.05 * peak  # the main cosine near its end
    assert float(schedule(100)) == pytest.approx(config.trainer.finish.learning_rate)
    assert float(schedule(140)) == pytest.approx(0.02 * config.trainer.finish.learning_rate)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    again = loaded.optimizer._learning_rate
    assert isinstance(again, FinishStage)
    for step in (0, 50, 99, 100, 120, 140):
        assert float(again(step)) == pytest.approx(float(schedule(step)))


def test_a_second_finishing_stage_follows_the_first_with_its_own_mix_and_rate(
        examples, tmp_path, caplog, shares):
    """trainer.finish.then: after the first finishing stage, then.epochs more, each batch
    drawing then.short_share short equations, the rate started again from then.learning_rate;
    still one optimizer; a resume inside the second stage stays in it."""
    caplog.set_level("INFO")
    base = ["trainer.optimizer.learning_rate=0.01", "trainer.optimizer.schedule=constant",
            "trainer.sample_predictions=0", "trainer.short_share=0.05",
            "trainer.finish.epochs=1", "trainer.finish.short_share=0.3",
            "trainer.finish.learning_rate=0.004", "trainer.finish.then.short_share=0.6",
            "trainer.finish.then.learning_rate=0.002",
            "trainer.finish.then.short_operand_digits=1"]
    config = tiny_config("trainer.epochs=1", "trainer.finish.then.epochs=2", *base)
    out = str(tmp_path / "trainer")
    first = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model,
                        out, keep_model=True, **trainer_kwargs(config))
    history = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and first["epochs_run"] == 4
    assert shares == [0.05, 0.3, 0.6]  # main, first stage, second stage
    assert shares.digits == [0, 0, 1]  # the second stage draws single-digit operands
    assert "finishing stage 1 of 2, epochs 2..2: 30% of each batch short" in caplog.text
    assert ("finishing stage 2 of 2, epochs 3..4: 60% of each batch equations of operands "
            "up to 1 digit") in caplog.text
    steps = -(-data_lib.read_stats(examples)["splits"]["train"]["count"] // 64)
    assert int(first["model"].optimizer.iterations.numpy()) == 4 * steps  # one optimizer
    # the rate after each epoch: the first stage's start (its one epoch ends at 2% of
    # 0.004, and the next step is the second stage's first: 0.002), half-way, the end
    rates = [h["learning_rate"] for h in history]
    assert rates == pytest.approx(
        [0.004, 0.002, 0.002 * (0.02 + 0.98 * 0.5), 0.002 * 0.02], rel=0.02)

    # one more epoch of the second stage: resumes after epoch 4 and stays in it
    caplog.clear()
    shares.clear()
    more = tiny_config("trainer.epochs=1", "trainer.finish.then.epochs=3", *base)
    run_trainer(more.trainer, examples, coverage_of(more), more.trainer.model, out,
                **trainer_kwargs(more))
    assert "after epoch 4" in caplog.text and "epoch 5/5" in caplog.text
    assert shares[-1] == 0.6 and 0.3 not in shares  # the second stage's own mix, not the first's
    assert shares.digits[-1] == 1
    assert "finishing stage 2 of 2, epochs 3..5" in caplog.text
    assert "stage 1 of 2" not in caplog.text


def test_a_second_finishing_stage_is_checked_and_goes_off_with_the_first():
    # finish.epochs 0 turns the finishing off, its second stage too (a preset with two
    # stages and --set trainer.finish.epochs=0 trains the main epochs only)
    off = tiny_config("trainer.finish.epochs=0", "trainer.finish.then.epochs=2",
                      "trainer.finish.then.short_share=0.8").trainer
    assert off.finish.stages() == () and off.finish.total_epochs == 0
    for field, value in [("epochs", -1), ("short_share", 1.0), ("learning_rate", 0)]:
        with pytest.raises(ConfigError, match=rf"^trainer\.finish\.then\.{field}: "):
            tiny_config("trainer.finish.epochs=1", f"trainer.finish.then.{field}={value}")
    with pytest.raises(ConfigError,
                       match=r"^trainer\.finish\.then\.short_share: 0.9 of a batch of 4"):
        tiny_config("trainer.finish.epochs=1", "trainer.finish.then.epochs=1",
                    "trainer.finish.then.short_share=0.9", "trainer.batch_size=4")
    tiny_config("trainer.finish.epochs=0", "trainer.finish.then.epochs=1",
                "trainer.finish.then.short_share=0.9", "trainer.batch_size=4")  # off: not checked
    # short draws by operand digits: an integer, and some operand of the task must fit
    for stage in ("trainer.finish", "trainer.finish.then"):
        with pytest.raises(ConfigError, match=rf"^{stage}\.short_operand_digits: an integer"):
            tiny_config("trainer.finish.epochs=1", "trainer.finish.then.epochs=1",
                        f"{stage}.short_operand_digits=-1")
        with pytest.raises(ConfigError, match=rf"^{stage}\.short_operand_digits: no operand "
                                              rf"of task.data \(10..99\) has at most 1 digit"):
            tiny_config("trainer.finish.epochs=1", "trainer.finish.then.epochs=1",
                        "task.data.operand_min=10", "evaluator.small_operands_threshold=null",
                        "trainer.short_max_chars=5", f"{stage}.short_operand_digits=1")
        # more digits than any operand: refused at once, however large
        for value in (3, 2 ** 62):
            with pytest.raises(ConfigError, match=rf"^{stage}\.short_operand_digits: .* more "
                                                  rf"digits than any operand of task.data"):
                tiny_config("trainer.finish.epochs=1", "trainer.finish.then.epochs=1",
                            f"{stage}.short_operand_digits={value}")
    tiny_config("trainer.finish.epochs=1", "task.data.operand_min=10",
                "evaluator.small_operands_threshold=null", "trainer.short_max_chars=5",
                "trainer.finish.short_operand_digits=2")
    config = tiny_config("trainer.finish.epochs=2", "trainer.finish.then.epochs=3")
    assert [s.epochs for s in config.trainer.finish.stages()] == [2, 3]
    assert config.trainer.finish.total_epochs == 5


def test_a_second_finishing_stage_keys_the_cache_only_when_set():
    """finish.then came later than the cached trainings: while it is off it is not in the
    Trainer's fingerprint (their cached outputs keep their keys); set, it is."""
    from lstm_math.config.fields import fingerprint_value

    off = fingerprint_value(tiny_config("trainer.finish.epochs=2").trainer.finish)
    assert off == {"epochs": 2, "short_share": 0.5, "learning_rate": 5e-4}
    on = fingerprint_value(tiny_config("trainer.finish.epochs=2",
                                       "trainer.finish.then.epochs=1").trainer.finish)
    assert on["then"] == {"epochs": 1, "short_share": 0.5, "learning_rate": 5e-4}
    # with the finishing off, a second stage is dropped: the key of no finishing at all
    dropped = fingerprint_value(tiny_config("trainer.finish.epochs=0",
                                            "trainer.finish.then.epochs=3").trainer.finish)
    assert dropped == fingerprint_value(tiny_config("trainer.finish.epochs=0").trainer.finish)
    # a second stage of 0 epochs is off whatever else it sets: the one-stage key
    one = tiny_config("trainer.finish.epochs=2", "trainer.finish.then.short_share=0.8",
                      "trainer.finish.then.learning_rate=0.001").trainer.finish
    assert fingerprint_value(one) == off and one.stages() == (one,)
    # and a bad value in it still fails, naming the field
    with pytest.raises(ConfigError, match=r"^trainer\.finish\.then\.short_share: "):
        tiny_config("trainer.finish.epochs=0", "trainer.finish.then.short_share=1.5")
    # a stage's short draws by operand digits key it only when set (0: by characters, as
    # every training cached before the field)
    digits = fingerprint_value(tiny_config(
        "trainer.finish.epochs=2", "trainer.finish.then.epochs=1",
        "trainer.finish.then.short_operand_digits=1").trainer.finish)
    assert digits["then"] == {"epochs": 1, "short_share": 0.5, "learning_rate": 5e-4,
                              "short_operand_digits": 1}
    assert {k: v for k, v in digits.items() if k != "then"} == off


def test_two_finishing_stages_are_saved_and_loaded_with_the_model(tmp_path):
    import keras

    from lstm_math.components.trainer import compile_model, model_coverage
    from lstm_math.components.trainer.model import finish_stage_steps

    config = tiny_config("trainer.finish.epochs=2", "trainer.finish.learning_rate=0.004",
                         "trainer.finish.then.epochs=1", "trainer.finish.then.learning_rate=0.001")
    hp = config.trainer.model
    model = compile_model(hp, model_coverage(coverage_of(config), hp), 100,
                          config.trainer.optimizer, finish_stage_steps(config.trainer.finish, 20))
    schedule = model.optimizer._learning_rate
    assert float(schedule(100)) == pytest.approx(0.004)
    assert float(schedule(139)) < 0.05 * 0.004
    assert float(schedule(140)) == pytest.approx(0.001)
    assert float(schedule(160)) == pytest.approx(0.02 * 0.001)
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = keras.models.load_model(path).optimizer._learning_rate
    for step in (0, 99, 100, 139, 140, 150, 160):
        assert float(again(step)) == pytest.approx(float(schedule(step)))


def test_a_finishing_stage_runs_again_with_its_rate_restarted_as_many_times_as_its_cycles():
    """finish.then.cycles 2: the second stage twice, back to back, the rate started again
    from then.learning_rate each time; in the fingerprint only when not 1 (every cached
    training keeps its key); a bad value fails fast naming the field."""
    from lstm_math.components.trainer.model import finish_stage_steps, learning_rate_schedule
    from lstm_math.config.fields import fingerprint_value

    base = ["trainer.finish.epochs=2", "trainer.finish.learning_rate=0.004",
            "trainer.finish.then.epochs=1", "trainer.finish.then.learning_rate=0.001"]
    once = tiny_config(*base).trainer
    twice = tiny_config(*base, "trainer.finish.then.cycles=2").trainer
    assert [(s.epochs, s.learning_rate) for s in twice.finish.stages()] == [
        (2, 0.004), (1, 0.001), (1, 0.001)]
    assert twice.finish.total_epochs == once.finish.total_epochs + 1 == 4
    assert [p for p, _ in twice.finish.named_stages()] == [
        "trainer.finish", "trainer.finish.then", "trainer.finish.then"]
    assert finish_stage_steps(twice.finish, 20) == ((40, 0.004), (20, 0.001), (20, 0.001))
    schedule = learning_rate_schedule(twice.optimizer, 100,
                                      finish_stages=finish_stage_steps(twice.finish, 20))
    for step, rate in [(140, 0.001), (159, None), (160, 0.001), (180, 0.02 * 0.001)]:
        if rate is None:
            assert float(schedule(step)) < 0.05 * 0.001  # the first cycle near its end
        else:
            assert float(schedule(step)) == pytest.approx(rate)
    # the first stage's cycles too, and off with its epochs
    first = tiny_config("trainer.finish.epochs=2", "trainer.finish.cycles=3").trainer.finish
    assert [s.epochs for s in first.stages()] == [2, 2, 2]
    assert tiny_config("trainer.finish.epochs=0", "trainer.finish.cycles=3",
                       "trainer.finish.then.epochs=1").trainer.finish.stages() == ()

    assert "cycles" not in fingerprint_value(once.finish)
    assert "cycles" not in fingerprint_value(once.finish)["then"]
    assert fingerprint_value(twice.finish)["then"]["cycles"] == 2
    assert {k: v for k, v in fingerprint_value(twice.finish).items() if k != "then"} == {
        k: v for k, v in fingerprint_value(once.finish).items() if k != "then"}
    for stage in ("trainer.finish", "trainer.finish.then"):
        for value in (0, -1, 1.5, "twice", 101, 2 ** 62):
            with pytest.raises(ConfigError, match=rf"^{stage}\.cycles: .*\binteger"):
                tiny_config(*base, f"{stage}.cycles={value}")
