"""<root>/tensorboard: one folder per pipeline run, named so a person can read it, every step of
the run linked (cached ones too), earlier runs kept: `tensorboard --logdir <root>/tensorboard`
compares runs."""

import dataclasses
import datetime
import json
import os
import re

import pytest
import tensorflow as tf

from lstm_math.components.trainer.summaries import BEST_TAG, write_best, write_hparams
from lstm_math.pipeline import cli_commands
from lstm_math.pipeline import tensorboard_view as tbv
from lstm_math.config import OptimizerConfig, load_config
from lstm_math.pipeline.pipeline import Node, Pipeline
from lstm_math.pipeline.runner import LocalRunner

NAME = re.compile(r"^\d{4}-\d\d-\d\d_\d\d\.\d\d\.\d\d_smoke(_[^/]+)?$")


def _write_scalar(log_dir, tag, value, step=1):
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        tf.summary.scalar(tag, value, step=step)
    writer.close()


def _fake_pipeline(calls):
    """Tuner / Trainer / Evaluator that write TensorBoard logs as the real ones lay them out
    (the Trainer's loss is its learning rate, so each run's curve is recognisable)."""

    def hparams(log_dir, model, optimizer, learning_rate, group, best):
        """The HParams record the Trainer and the Tuner's trials write (their functions)."""
        writer = tf.summary.create_file_writer(log_dir)
        write_hparams(writer, dataclasses.asdict(model),
                      {**dataclasses.asdict(optimizer), "learning_rate": learning_rate},
                      group)
        write_best(writer, best)
        writer.close()

    def tuner(ctx):
        calls.append("Tuner")
        trial = os.path.join(ctx.output_dir, "logs", "trial-01")
        _write_scalar(os.path.join(trial, "validation"), "exact_match", 0.5)
        hparams(trial, ctx.params.model, OptimizerConfig(), 0.001, f"trial-01 {os.path.basename(ctx.output_dir)[:8]}", 0.5)
        return {}

    def trainer(ctx):
        calls.append("Trainer")
        lr = ctx.params.trainer.optimizer.learning_rate
        _write_scalar(os.path.join(ctx.output_dir, "logs", "train"), "loss", lr)
        _write_scalar(os.path.join(ctx.output_dir, "logs", "validation"), "exact_match", lr)
        t = ctx.params.trainer
        hparams(os.path.join(ctx.output_dir, "logs"), t.model, t.optimizer, lr,
                f"trainer {os.path.basename(ctx.output_dir)[:8]}", lr * 10)
        return {}

    def evaluator(ctx):
        calls.append("Evaluator")
        _write_scalar(os.path.join(ctx.output_dir, "logs"), "exact_match", 0.9)
        return {}

    tuned = {"tuner": "tuner", "model": "trainer.model"}
    return Pipeline("fake", [Node("Tuner", tuner, (), config=tuned),
                             Node("Trainer", trainer, ("Tuner",), config={"trainer": "trainer"}),
                             Node("Evaluator", evaluator, ("Trainer",),
                                  config={"evaluator": "evaluator"}),
                             Node("Pusher", lambda ctx: {}, ("Evaluator",))])


def _run(root, calls, *overrides):
    config = load_config("smoke", [f"runtime.pipeline_root={root}", *overrides])
    return LocalRunner(config).run(_fake_pipeline(calls))


def _loss(accumulator_runs, multiplexer, run):
    assert run in accumulator_runs, (run, sorted(accumulator_runs))
    events = multiplexer.Tensors(run, "loss")
    return float(tf.make_ndarray(events[-1].tensor_proto))


def test_two_runs_stay_visible_under_readable_names_with_cached_steps_linked(tmp_path):
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    root = tmp_path / "root"
    calls = []
    first = _run(root, calls)
    second = _run(root, calls, "trainer.optimizer.learning_rate=0.01")
    # the second run reused the Tuner (its config did not change) and retrained
    assert calls == ["Tuner", "Trainer", "Evaluator", "Trainer", "Evaluator"]
    assert second["components"]["Tuner"]["cached"]
    view = root / "tensorboard"
    assert first["tensorboard"] == second["tensorboard"] == str(view)
    names = sorted(os.listdir(view))
    assert names == [first["tensorboard_run"], second["tensorboard_run"]]
    # readable: time, preset, the values that differ from the preset (short key)
    assert all(NAME.match(n) for n in names), names
    assert first["tensorboard_run"].endswith("_smoke")
    assert second["tensorboard_run"].endswith("_smoke_optimizer.learning_rate=0.01")
    for manifest in (first, second):
        run = view / manifest["tensorboard_run"]
        assert sorted(os.listdir(run)) == ["evaluator", "trainer", "tuner"]
        for step in ("tuner", "trainer", "evaluator"):
            link = run / step
            assert os.path.islink(link) and not os.path.isabs(os.readlink(link))
            uri = manifest["components"][step.capitalize()]["uri"]
            assert os.path.samefile(link, os.path.join(uri, "logs"))
    # the cached Tuner is linked from both runs, to the logs its first run wrote
    assert os.path.samefile(view / names[0] / "tuner", view / names[1] / "tuner")

    # What `tensorboard --logdir <root>/tensorboard` loads: both trainings, each its own curve.
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(view))
    multiplexer.Reload()
    runs = multiplexer.Runs()
    preset_lr = load_config("smoke").trainer.optimizer.learning_rate
    assert preset_lr != 0.01
    assert _loss(runs, multiplexer, f"{names[0]}/trainer/train") == pytest.approx(preset_lr)
    assert _loss(runs, multiplexer, f"{names[1]}/trainer/train") == pytest.approx(0.01)
    for name in names:
        assert f"{name}/tuner/trial-01/validation" in runs and f"{name}/evaluator" in runs

    # The HParams dashboard over the same --logdir (TensorBoard's own app): both trainings,
    # the learning rate first (it differs), the cached trial one row seen from both runs.
    groups, hparam_names = _hparams_dashboard(str(view))
    assert hparam_names[0] == "learning_rate" and {"encoder_units", "schedule"} <= set(
        hparam_names)
    trainings = sorted((g["hparams"]["learning_rate"], g["sessions"]) for g in groups
                       if g["name"].startswith("trainer "))
    assert trainings == [(pytest.approx(preset_lr), [f"{names[0]}/trainer"]),
                         (pytest.approx(0.01), [f"{names[1]}/trainer"])]
    (trial,) = [g for g in groups if g["name"].startswith("trial-01 ")]
    assert sorted(trial["sessions"]) == [f"{n}/tuner/trial-01" for n in names]
    assert all(("", BEST_TAG) in g["metrics"] and ("validation", "exact_match") in g["metrics"]
               for g in groups)

    # the whole root moves with its view
    moved = tmp_path / "moved"
    os.rename(root, moved)
    assert os.path.samefile(moved / "tensorboard" / names[1] / "trainer",
                            os.path.join(second["components"]["Trainer"]["uri"].replace(
                                str(root), str(moved)), "logs"))


def _hparams_dashboard(logdir):
    """(session groups, hyperparameter names in the dashboard's column order) as TensorBoard
    serves them for ``tensorboard --logdir logdir``."""
    from tensorboard import default, program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from werkzeug.test import Client

    board = program.TensorBoard(default.get_plugins())
    board.configure(argv=[None, "--logdir", logdir, "--load_fast=false"])
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    app = application.TensorBoardWSGIApp(
        board.flags, board.plugin_loaders, data_provider.MultiplexerDataProvider(
            multiplexer, logdir), board.assets_zip_provider, multiplexer)
    client = Client(app)

    def post(route, body):
        response = client.post(f"/data/plugin/hparams/{route}", data=json.dumps(body),
                               content_type="application/json")
        assert response.status_code == 200, response.get_data()[:500]
        return json.loads(response.get_data())

    experiment = post("experiment", {"experimentName": ""})
    found = post("session_groups", {"experimentName": "", "startIndex": 0, "sliceSize": 100,
                                    "allowedStatuses": ["STATUS_UNKNOWN"], "colParams": []})
    groups = [{"name": g["name"],
               "hparams": g["hparams"],
               "sessions": [x["name"] for x in g["sessions"]],
               "metrics": {(m["name"].get("group", ""), m["name"]["tag"])
                           for m in g["metricValues"]}}
              for g in found["sessionGroups"]]
    return groups, [h["name"] for h in experiment["hparamInfos"]]


def test_a_step_run_alone_gets_its_own_folder_with_the_cached_steps_it_read(tmp_path):
    root = tmp_path / "root"
    calls = []
    _run(root, calls)
    config = load_config("smoke", [f"runtime.pipeline_root={root}", "trainer.epochs=2"])
    alone = LocalRunner(config).run(_fake_pipeline(calls), only=["Trainer"])
    assert alone["tensorboard_run"].endswith("_smoke_trainer.epochs=2_Trainer")
    folder = root / "tensorboard" / alone["tensorboard_run"]
    # the step that ran and the cached step it read are linked; nothing downstream
    assert sorted(os.listdir(folder)) == ["trainer", "tuner"]
    assert len(os.listdir(root / "tensorboard")) == 2  # the first run is still there


def test_run_names_say_what_differs_from_the_closest_preset():
    when = datetime.datetime(2026, 12, 2, 6, 44, 12, tzinfo=datetime.timezone.utc)
    presets = tbv.preset_configs()
    assert {"default", "smoke"} <= set(presets)

    def name(preset, *overrides):
        return tbv.run_name(load_config(preset, list(overrides)).to_dict(), when,
                            presets=presets)

    assert name("smoke") == "2026-12-02_06.44.12_smoke"
    assert name("default") == "2026-12-02_06.44.12_default"
    # where things live is not what was trained: not in the name
    assert name("smoke", "runtime.pipeline_root=/elsewhere",
                "pusher.serving_base=/srv") == "2026-12-02_06.44.12_smoke"
    # a key shown by its shortest unambiguous suffix (`seed`, `epochs` and `learning_rate` are
    # in two sections)
    assert name("smoke", "trainer.seed=12345", "trainer.optimizer.learning_rate=0.003",
                "trainer.epochs=4") == ("2026-12-02_06.44.12_smoke_trainer.epochs=4_"
                                        "optimizer.learning_rate=0.003_trainer.seed=12345")
    assert name("smoke", "trainer.optimizer.schedule=constant") == \
        "2026-12-02_06.44.12_smoke_schedule=constant"
    # lists joined, no path separators, long names capped with +N
    many = name("smoke", "task.data.operators=['+', '-']", "trainer.epochs=3",
                "trainer.batch_size=64", "trainer.seed=98765", "task.data.seed=2",
                "trainer.optimizer.warmup_steps=5")
    assert "operators=+,-" in many and many.endswith("_+2") and "/" not in many
    assert many.count("=") == 4
    # a mapping set where the preset has none: its entries, not the mapping as null
    assert name("smoke", 'task.data.answer_format={"+": "msd_first"}') == \
        "2026-12-02_06.44.12_smoke_answer_format.+=msd_first"


def test_a_step_starting_is_linked_before_its_logs_exist_and_old_links_go(tmp_path):
    root = tmp_path / "root"
    view = root / "tensorboard"
    view.mkdir(parents=True)
    os.symlink("../Trainer/old/logs", view / "trainer")  # the former one-run layout
    run = tbv.RunView.start(str(root), load_config("smoke").to_dict())
    assert not os.path.lexists(view / "trainer")
    running = str(root / "Tuner" / "cccc")
    link = run.show("Tuner", running, require_logs=False)
    assert os.path.islink(link) and not os.path.exists(link)
    # finished without logs: no link; a component without logs: none either
    assert run.show("Tuner", running) is None and not os.path.lexists(link)
    assert run.show("Pusher", str(root / "Pusher" / "p")) is None
    # two runs started in the same second stay apart
    os.makedirs(run.dir, exist_ok=True)
    assert tbv.RunView.start(str(root), load_config("smoke").to_dict()).name != run.name


def test_a_bucket_root_gets_no_view_and_the_summary_names_runs_by_logdir_spec():
    assert tbv.RunView.start("gs://bucket/root", load_config("smoke").to_dict()) is None
    manifest = {"components": {
        "Tuner": {"uri": "gs://bucket/root/Tuner/aaaa"},
        "Trainer": {"uri": "gs://bucket/root/Trainer/bbbb"},
        "Evaluator": {"uri": "gs://bucket/root/Evaluator/cccc/"}}}
    assert cli_commands.tensorboard_logdir(manifest, "gs://bucket/root") == (
        "--logdir_spec tuner:gs://bucket/root/Tuner/aaaa/logs,"
        "trainer:gs://bucket/root/Trainer/bbbb/logs,"
        "evaluator:gs://bucket/root/Evaluator/cccc/logs")
    local = {"components": {}, "tensorboard": "artifacts/tensorboard"}
    assert cli_commands.tensorboard_logdir(local, "artifacts") == "--logdir artifacts/tensorboard"


def test_steps_of_one_orchestrated_run_share_its_folder(tmp_path, monkeypatch):
    """`lstm-math rehearse` runs each step as its own process and names the run once
    (LSTM_MATH_TENSORBOARD_RUN): every step links into that folder."""
    root = tmp_path / "root"
    calls = []
    monkeypatch.setenv(tbv.RUN_ENV, "2026-12-02_07.10.43_smoke_rehearsal")
    config = load_config("smoke", [f"runtime.pipeline_root={root}"])
    for step in ("Tuner", "Trainer", "Evaluator"):  # one process per step, in order
        manifest = LocalRunner(config).run(_fake_pipeline(calls), only=[step])
        assert manifest["tensorboard_run"] == "2026-12-02_07.10.43_smoke_rehearsal"
    assert calls == ["Tuner", "Trainer", "Evaluator"]
    assert os.listdir(root / "tensorboard") == ["2026-12-02_07.10.43_smoke_rehearsal"]
    assert sorted(os.listdir(root / "tensorboard" / "2026-12-02_07.10.43_smoke_rehearsal")) == [
        "evaluator", "trainer", "tuner"]
