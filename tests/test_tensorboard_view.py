"""<root>/tensorboard: the runner's view that gives TensorBoard's runs readable names."""

import os

from lstm_math.pipeline import artifacts as store
from lstm_math.pipeline import cli


def _logs(root, component, fp):
    path = root / component / fp / "logs"
    path.mkdir(parents=True)
    return str(root / component / fp)


def test_the_view_follows_the_latest_artifact_atomically(tmp_path):
    root = tmp_path / "root"
    first, second = _logs(root, "Trainer", "aaaa"), _logs(root, "Trainer", "bbbb")
    link = store.update_tensorboard_view(str(root), "Trainer", first)
    assert link == str(root / "tensorboard" / "trainer")
    assert os.readlink(link) == os.path.join("..", "Trainer", "aaaa", "logs")  # relative
    assert store.update_tensorboard_view(str(root), "Trainer", second) == link
    assert os.path.samefile(link, os.path.join(second, "logs"))
    assert os.listdir(root / "tensorboard") == ["trainer"]  # no temporary link left behind
    # The whole root moves with its view.
    moved = tmp_path / "moved"
    os.rename(root, moved)
    assert os.path.samefile(moved / "tensorboard" / "trainer", moved / "Trainer" / "bbbb" / "logs")


def test_running_component_missing_logs_and_components_without_logs(tmp_path):
    root = tmp_path / "root"
    running = str(root / "Tuner" / "cccc")
    # a component starting: linked before its logs exist (watched while it runs)
    link = store.update_tensorboard_view(str(root), "Tuner", running, require_logs=False)
    assert os.path.islink(link) and not os.path.exists(link)
    # finished without logs, or absent from the pipeline: no run in the view
    assert store.update_tensorboard_view(str(root), "Tuner", running) is None
    assert not os.path.lexists(link)
    assert store.update_tensorboard_view(str(root), "Tuner", None) is None
    assert store.update_tensorboard_view(str(root), "Pusher", _logs(root, "Pusher", "p")) is None
    assert os.listdir(root / "tensorboard") == []


def test_a_bucket_root_gets_no_view_and_the_summary_names_runs_by_logdir_spec(tmp_path):
    assert store.update_tensorboard_view("gs://bucket/root", "Trainer",
                                         "gs://bucket/root/Trainer/ffff") is None
    manifest = {"components": {
        "Tuner": {"uri": "gs://bucket/root/Tuner/aaaa"},
        "Trainer": {"uri": "gs://bucket/root/Trainer/bbbb"},
        "Evaluator": {"uri": "gs://bucket/root/Evaluator/cccc/"}}}
    assert cli._tensorboard_logdir(manifest, "gs://bucket/root") == (
        "--logdir_spec tuner:gs://bucket/root/Tuner/aaaa/logs,"
        "trainer:gs://bucket/root/Trainer/bbbb/logs,"
        "evaluator:gs://bucket/root/Evaluator/cccc/logs")
    local = {"components": {}, "tensorboard": "artifacts/tensorboard"}
    assert cli._tensorboard_logdir(local, "artifacts") == "--logdir artifacts/tensorboard"
