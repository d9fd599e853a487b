"""tf.distribute: the custom training loop under MirroredStrategy (2 logical CPUs) and
MultiWorkerMirroredStrategy (2 worker processes on 127.0.0.1), each in fresh processes
(logical devices and TF_CONFIG must be set before TensorFlow starts)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import REPO, free_ports

TINY = ["task.data.operand_max=99", "task.data.num_examples=2000", "task.data.num_shards=2",
        "trainer.model.embedding_dim=8", "trainer.model.encoder_units=16",
        "trainer.model.decoder_units=16", "trainer.batch_size=64", "trainer.shuffle_buffer=0",
        "trainer.optimizer.schedule=constant", "trainer.optimizer.learning_rate=0.01",
        "trainer.sample_predictions=2", "tuner.enabled=false"]


@pytest.fixture(scope="module")
def examples(examples_for):
    return examples_for("smoke", *TINY)


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from lstm_math.components import data as data_lib
    from lstm_math.components.metrics import summarize
    from lstm_math.components.trainer import TrainLoop, compile_model, model_coverage, run_trainer
    from lstm_math.config import coverage_of, load_config
    from lstm_math.pipeline.pipeline import create_pipeline, params_of

    examples, out, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    config = load_config("smoke", overrides)
    given = params_of(create_pipeline(config).node("Trainer"), config)
    hparams = config.trainer.model
    coverage = model_coverage(coverage_of(config), hparams)

    def train(strategy, weights, steps=8):
        with strategy.scope():
            model = compile_model(hparams, coverage, steps, config.trainer.optimizer)
            model.optimizer.build(model.trainable_variables)
        if weights is not None:
            model.set_weights(weights)
        loop = TrainLoop(model, strategy)
        ds = data_lib.training_dataset(examples, "train", coverage, 64, repeat=True,
                                       drop_remainder=True, with_operator=True)
        iterator = iter(strategy.experimental_distribute_dataset(ds))
        losses = [summarize(loop.train_steps(iterator, 1, 1))["loss"] for _ in range(steps)]
        return losses, model.get_weights()

    one = tf.distribute.get_strategy()
    with one.scope():
        start = compile_model(hparams, coverage, 8, config.trainer.optimizer).get_weights()
    mirrored = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])
    one_losses, one_weights = train(one, start)
    two_losses, two_weights = train(mirrored, start)
    result = run_trainer(config.trainer, examples, coverage_of(config), hparams, out,
                         shuffle_seed=given.shuffle_seed, strategy=given.strategy)
    print("RESULT " + json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "one": one_losses, "two": two_losses,
        "max_weight_diff": max(float(abs(a - b).max()) for a, b in zip(one_weights, two_weights)),
        "trainer": {k: result[k] for k in ("strategy", "replicas", "epochs_run")},
        "final": result["final_metrics"]}))
""")


def test_mirrored_over_two_cpus_matches_one_device(examples, tmp_path):
    overrides = TINY + ["runtime.strategy=mirrored", "trainer.epochs=1",
                        "trainer.steps_per_epoch=6", "trainer.validation_steps=2"]
    proc = subprocess.run([sys.executable, "-c", MIRRORED, examples, str(tmp_path / "out"),
                           json.dumps(overrides)], env=_env(), capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT "):])
    assert r["replicas"] == 2
    # Same batches, same start: the global-batch loss and the updates agree with one device.
    np.testing.assert_allclose(r["two"], r["one"], rtol=1e-4, atol=1e-5)
    assert r["two"][-1] < r["two"][0]
    assert r["max_weight_diff"] < 1e-3
    # The Trainer itself under runtime.strategy=mirrored: 2 replicas, a model, metrics.
    assert r["trainer"] == {"strategy": "MirroredStrategy", "replicas": 2, "epochs_run": 1}
    assert np.isfinite(r["final"]["loss"]) and "val_exact_match" in r["final"]
    assert os.path.exists(tmp_path / "out" / "model.keras")


WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from lstm_math.components.trainer import run_trainer
    from lstm_math.config import coverage_of, load_config
    from lstm_math.pipeline.pipeline import create_pipeline, params_of

    examples, out, dump, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    config = load_config("smoke", overrides)
    given = params_of(create_pipeline(config).node("Trainer"), config)
    result = run_trainer(config.trainer, examples, coverage_of(config), config.trainer.model, out,
                         keep_model=True, shuffle_seed=given.shuffle_seed, strategy=given.strategy)
    np.savez(dump, *result.pop("model").get_weights())
    print("RESULT " + json.dumps({k: result[k] for k in ("strategy", "replicas", "epochs_run")}))
""")


@pytest.mark.slow
def test_multi_worker_two_processes_end_with_identical_weights(examples, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    overrides = TINY + ["trainer.epochs=2", "trainer.steps_per_epoch=5",
                        "trainer.validation_steps=2", "trainer.steps_per_loop=5"]
    out = str(tmp_path / "trainer")
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, examples, out, str(tmp_path / f"worker{index}.npz"),
             json.dumps(overrides)], env=_env(TF_CONFIG=tf_config), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=480))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-4000:]
        line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
        assert json.loads(line[len("RESULT "):]) == {
            "strategy": "MultiWorkerMirroredStrategy", "replicas": 2, "epochs_run": 2}
    w0 = np.load(tmp_path / "worker0.npz")
    w1 = np.load(tmp_path / "worker1.npz")
    assert len(w0.files) == len(w1.files) > 0
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    # Only the chief (worker 0) writes the model, the checkpoints and the history.
    history = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    assert os.path.exists(os.path.join(out, "model.keras"))
    assert os.path.exists(os.path.join(out, "checkpoints", "ckpt-2.index"))
