"""`lstm-math run --config smoke` end to end, and its pushed SavedModel from a fresh process."""

import glob
import json
import os

import pytest

from lstm_math.components import sampling
from lstm_math.components import data as data_lib
from tests.helpers import check_served_contract, lstm_math


def test_every_stage_ran_and_wrote_its_artifacts(smoke_run):
    comps = smoke_run["manifest"]["components"]
    assert list(comps) == ["ExampleGen", "DataValidation", "Tuner", "Trainer", "Evaluator",
                           "Exporter", "InfraValidator", "Pusher"]
    assert all(not c["cached"] for c in comps.values())
    run_dir = smoke_run["manifest"]["run_dir"]
    assert os.path.exists(os.path.join(run_dir, "config.yaml"))
    # Where to look is printed at the end.
    out = smoke_run["stdout"]
    assert "tensorboard --logdir" in out and "saved_model_cli show" in out
    # Progress is logged at INFO even when an import configured logging first.
    for step in ("ExampleGen: done", "Tuner:", "Trainer: done", "Evaluator:", "Pusher: pushed"):
        assert step in smoke_run["stderr"], step


def test_shards_for_all_splits_and_no_leakage(smoke_run):
    examples = smoke_run["manifest"]["components"]["ExampleGen"]["uri"]
    seen = {}
    for split in sampling.SPLITS:
        assert glob.glob(os.path.join(examples, f"{split}-*-of-*.tfrecord.gz"))
        for batch in data_lib.features_dataset(examples, split, 1024):
            for text in batch["equation"].numpy().astype(str):
                assert seen.setdefault(text, split) == split
    assert len(seen) == 3000


def test_tensorboard_logs_and_tuner_trials(smoke_run):
    comps = smoke_run["manifest"]["components"]
    trainer = comps["Trainer"]["uri"]
    events = glob.glob(os.path.join(trainer, "logs", "**", "events.out.tfevents.*"), recursive=True)
    assert any("/train/" in e for e in events) and any("/validation/" in e for e in events)
    trials = comps["Tuner"]["properties"]["trials"]
    assert len(trials) == 2 and all(t["val_exact_match"] is not None for t in trials)
    with open(os.path.join(comps["Tuner"]["uri"], "best_hyperparameters.json")) as f:
        best = json.load(f)
    # The best is the trial with the highest objective (ties: the earliest), with the values
    # it drew; the Trainer trained exactly that.
    top = min(trials, key=lambda t: (-t["val_exact_match"], t["trial_id"]))
    assert best == {"model": top["model"], "optimizer": top["optimizer"]}
    assert best["model"]["encoder_units"] == top["hyperparameters"]["encoder_units"]
    with open(os.path.join(trainer, "hparams.json")) as f:
        assert json.load(f) == best  # the Trainer trained what the Tuner chose


def _event_values(run_dir):
    """{tag: [summary values]} of the event files directly in ``run_dir``."""
    import tensorflow as tf

    found = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                found.setdefault(v.tag, []).append(v)
    return found


def test_tensorboard_view_names_runs_and_dashboards_read_well(smoke_run):
    """<root>/tensorboard/<run name>: runs <run>/trainer/train, <run>/tuner/trial-01,
    <run>/evaluator, as TensorBoard lists them; one tag scheme for tuner and trainer; the
    trials and the training under the same HParams names; HParams integers as integers;
    the Graphs tab has the model's layers."""
    from tensorboard.backend.event_processing import event_accumulator, io_wrapper
    from tensorboard.plugins.hparams import plugin_data_pb2

    from lstm_math.components.trainer.summaries import BEST_TAG

    root = str(smoke_run["root"])
    view = os.path.join(root, "tensorboard")
    runs = sorted(os.listdir(os.path.join(root, "runs")))
    with open(os.path.join(root, "runs", runs[-1], "manifest.json")) as f:
        latest = json.load(f)
    assert latest["tensorboard"] == view and smoke_run["manifest"]["tensorboard"] == view
    assert f"tensorboard --logdir {view}" in smoke_run["stdout"]
    name = latest["tensorboard_run"]
    assert os.listdir(view) == [name] and name.endswith("_smoke")
    run = os.path.join(view, name)
    assert sorted(os.listdir(run)) == ["evaluator", "trainer", "tuner"]
    for step, component in (("tuner", "Tuner"), ("trainer", "Trainer"),
                            ("evaluator", "Evaluator")):
        link = os.path.join(run, step)
        assert os.path.islink(link) and not os.path.isabs(os.readlink(link))  # movable root
        assert os.path.samefile(link, os.path.join(latest["components"][component]["uri"],
                                                   "logs"))
    # The runs as TensorBoard's loader finds them (through the symlinks).
    found = {os.path.relpath(d, run) for d in io_wrapper.GetLogdirSubdirectories(view)}
    assert {"trainer", "trainer/train", "trainer/validation", "evaluator", "tuner/trial-01",
            "tuner/trial-01/train", "tuner/trial-01/validation", "tuner/trial-02"} <= found
    assert not [r for r in found if "execution" in r or "Trainer" in r or "Tuner" in r]

    # One naming scheme: a trial's tags are the Trainer's (no epoch_*, evaluation_*).
    for sub in ("train", "validation"):
        trainer_tags = set(_event_values(os.path.join(run, "trainer", sub)))
        trial_tags = set(_event_values(os.path.join(run, "tuner", "trial-01", sub)))
        assert trial_tags and trial_tags <= trainer_tags, (sub, trial_tags - trainer_tags)
        assert {"loss", "exact_match", "char_accuracy"} <= trial_tags

    # HParams: a trial and the training hold the same hyperparameter names (every model and
    # optimizer field) and the same objective tag; the units as an integer ('16', not 16.000).
    def session(path):
        values = _event_values(path)
        starts = [plugin_data_pb2.HParamsPluginData.FromString(
            v.metadata.plugin_data.content).session_start_info
            for v in values.get("_hparams_/session_start_info", [])]
        assert len(starts) == 1 and BEST_TAG in values, (path, sorted(values))
        return starts[0]

    trial, training = session(os.path.join(run, "tuner", "trial-01")), session(
        os.path.join(run, "trainer"))
    assert set(trial.hparams) == set(training.hparams) >= {
        "encoder_units", "embedding_dim", "reverse_output", "learning_rate", "schedule"}
    assert trial.group_name != training.group_name
    units = trial.hparams["encoder_units"]
    assert units.WhichOneof("kind") == "string_value" and units.string_value in ("8", "16")

    # Graphs: the forward pass with the layers as groups of ops at its top level.
    acc = event_accumulator.EventAccumulator(os.path.join(run, "trainer", "train"))
    acc.Reload()
    scopes = {n.name.split("/")[0] for n in acc.Graph().node if "/" in n.name}
    for layer in ("embedding", "encoder_0", "decoder", "attention_query", "logits"):
        assert scopes & {layer, f"{layer}_1"}, (layer, sorted(scopes))

    # Evaluator: the error maps, wide enough to read at TensorBoard's size.
    images = _event_values(os.path.join(run, "evaluator"))
    assert {"error_map_plus", "error_sizes", "evaluation_report"} <= set(images)
    width = int(images["error_map_plus"][0].tensor.string_val[0])
    assert 600 <= width <= 800  # shown at ~350 px: large text and dots (plots.py)


def test_blessed_model_was_pushed_with_a_version(smoke_run):
    push = smoke_run["manifest"]["components"]["Pusher"]["properties"]
    assert push["pushed"] is True and push["version"] == 1
    assert os.path.exists(os.path.join(smoke_run["serving"], "lstm_math", "1", "saved_model.pb"))
    comps = smoke_run["manifest"]["components"]
    metrics = comps["Evaluator"]["properties"]["metrics"]
    # Judged on the whole test split ExampleGen wrote, and the rate is the count's.
    assert metrics["count"] == comps["ExampleGen"]["properties"]["counts"]["test"]
    assert metrics["exact_match"] == pytest.approx(1 - metrics["wrong"] / metrics["count"])


def test_pushed_model_answers_from_a_process_without_project_code(smoke_run, tmp_path):
    check_served_contract(os.path.join(smoke_run["serving"], "lstm_math", "1"), str(tmp_path))


def test_rerun_is_cached_and_pushes_nothing_new(smoke_run):
    proc = lstm_math("run", "--config", "smoke", "--pipeline-root", str(smoke_run["root"]),
                     "--serving-base", str(smoke_run["serving"]))
    runs = sorted(os.listdir(smoke_run["root"] / "runs"))
    with open(smoke_run["root"] / "runs" / runs[-1] / "manifest.json") as f:
        manifest = json.load(f)
    assert all(c["cached"] for c in manifest["components"].values())
    assert sorted(n for n in os.listdir(smoke_run["serving"] / "lstm_math")
                  if not n.startswith(".")) == ["1"]  # .push.lock aside


def test_bad_config_fails_fast_naming_the_field(tmp_path):
    proc = lstm_math("run", "--config", "smoke", "--set", "trainer.epochs=0",
                     "--pipeline-root", str(tmp_path), check=False, timeout=120)
    assert proc.returncode == 2
    assert "trainer.epochs" in proc.stderr
    assert not os.path.exists(tmp_path / "ExampleGen")


def test_pushed_pipeline_model_served_over_rest_and_grpc(smoke_run):
    """The real pushed model behind the local TF Serving-compatible server."""
    from lstm_math.serving.client import predict_grpc, predict_rest
    from lstm_math.serving.server import ModelServer

    rows = ["31 + 87", "5+5", "31 + x", "1 + 2 + 3"]
    with ModelServer(str(smoke_run["serving"]), rest_port=0, grpc_port=0) as server:
        rest = predict_rest(rows, port=server.rest_port, timeout=60)
        grpc_rows = predict_grpc(rows, port=server.grpc_port, timeout=60)
    for answers in (rest, grpc_rows):
        assert [a["valid"] for a in answers] == [True, True, False, False]
        assert "unknown character 'x'" in answers[2]["error"]
        assert "too long" in answers[3]["error"]
    # Both protocols give the same answers as each other.
    assert [a["result"] for a in rest] == [a["result"] for a in grpc_rows]


def test_predict_command_via_saved_model(smoke_run):
    proc = lstm_math("predict", "--via", "saved-model", "--saved-model", str(smoke_run["serving"]),
                     "--json", "31 + 87", "31 + x", timeout=300, check=False)
    answers = json.loads(proc.stdout)
    rows = answers if isinstance(answers, list) else answers.get("predictions", answers)
    assert rows[0]["valid"] is True and rows[1]["valid"] is False
    assert "unknown character" in rows[1]["error"]
    # exit 3 exactly when a valid answer is not trusted (the smoke model is barely trained)
    unsure = any(r["valid"] and not r["trusted"] for r in rows)
    assert proc.returncode == (3 if unsure else 0), proc.stderr[-2000:]


def test_gate_refuses_a_model_below_the_threshold_and_nothing_is_pushed(smoke_run, tmp_path):
    """The same pipeline with a bar the barely trained smoke model cannot reach: the
    Evaluator does not bless it and the Pusher pushes nothing (the upstream steps are
    cached from the smoke run)."""
    serving = tmp_path / "serving"
    metrics = smoke_run["manifest"]["components"]["Evaluator"]["properties"]["metrics"]
    assert metrics["exact_match"] < 0.999, "the smoke model got too good for this test"
    lstm_math("run", "--config", "smoke", "--set", "evaluator.threshold=0.999",
              "--pipeline-root", str(smoke_run["root"]), "--serving-base", str(serving))
    runs = sorted(os.listdir(smoke_run["root"] / "runs"))
    with open(smoke_run["root"] / "runs" / runs[-1] / "manifest.json") as f:
        comps = json.load(f)["components"]
    assert comps["Trainer"]["cached"] and not comps["Evaluator"]["cached"]
    blessing = comps["Evaluator"]["properties"]["blessing"]
    assert blessing["blessed"] is False
    assert any("below the threshold 0.999" in r for r in blessing["reasons"])
    push = comps["Pusher"]["properties"]
    assert push["pushed"] is False and "not blessed" in push["reason"]
    assert not (serving / "lstm_math").exists() or not os.listdir(serving / "lstm_math")
