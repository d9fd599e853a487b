import os

import pytest

from lstm_math.components import pusher
from lstm_math.components.baseline import resolve_baseline
from lstm_math.components.evaluator import bless


def make_model(path, marker):
    os.makedirs(path / "variables", exist_ok=True)
    (path / "saved_model.pb").write_text(marker)
    return str(path)


def listed(base):
    """What a server sees under the model base (the hidden .push.lock aside)."""
    return sorted(n for n in os.listdir(base / "lstm_math") if not n.startswith("."))


def test_versions_grow_and_old_ones_are_pruned(tmp_path):
    base = tmp_path / "serving"
    pushed = [pusher.push(make_model(tmp_path / f"export{i}", f"m{i}"), str(base), "lstm_math",
                          keep_versions=2)
              for i in range(3)]
    assert [p["version"] for p in pushed] == [1, 2, 3]
    assert [p["removed_versions"] for p in pushed] == [[], [], [1]]
    assert listed(base) == ["2", "3"]
    assert (base / "lstm_math" / "3" / "saved_model.pb").read_text() == "m2"
    # Versions keep growing past a pruned one, and after a restart of the numbering source.
    assert pusher.push(make_model(tmp_path / "e4", "m4"), str(base), "lstm_math", 2)["version"] == 4


def test_pushing_the_same_model_again_makes_no_new_version(tmp_path):
    src = make_model(tmp_path / "export", "m")
    base = tmp_path / "serving"
    first = pusher.push(src, str(base), "lstm_math", keep_versions=5)
    again = pusher.push(src, str(base), "lstm_math", keep_versions=5)
    assert first["already_pushed"] is False and again["already_pushed"] is True
    assert again["version"] == first["version"] == 1 and again["digest"] == first["digest"]
    assert listed(base) == ["1"]


def test_staging_left_by_a_dead_push_is_cleaned_up_and_never_served(tmp_path):
    base = tmp_path / "serving"
    pusher.push(make_model(tmp_path / "a", "a"), str(base), "lstm_math", 5)
    dead = base / "lstm_math" / ".incoming-2-999999999"  # no such process
    make_model(dead, "half")
    out = pusher.push(make_model(tmp_path / "b", "b"), str(base), "lstm_math", 5)
    assert out["version"] == 2
    assert listed(base) == ["1", "2"]


def test_crash_mid_push_leaves_serving_base_as_it_was(tmp_path, monkeypatch):
    src = make_model(tmp_path / "export", "m")
    base = tmp_path / "serving"
    pusher.push(src, str(base), "lstm_math", keep_versions=5)
    before = listed(base)

    def exploding_copy(a, b, *args, **kw):
        os.makedirs(b)
        (open(os.path.join(b, "saved_model.pb"), "w")).write("half")
        raise OSError("disk full")

    monkeypatch.setattr(pusher.shutil, "copytree", exploding_copy)
    with pytest.raises(OSError):
        pusher.push(make_model(tmp_path / "export2", "m2"), str(base), "lstm_math",
                    keep_versions=5)
    versions = [v for v in os.listdir(base / "lstm_math") if v.isdigit()]
    assert sorted(versions) == before  # no half-written numbered version is visible
    assert (base / "lstm_math" / "1" / "saved_model.pb").read_text() == "m"


def test_unblessed_or_infra_failed_models_are_not_pushed(tmp_path):
    src = make_model(tmp_path / "export", "m")
    out = pusher.run_pusher(src, {"blessed": False, "reasons": ["low"]}, {"passed": True},
                            str(tmp_path / "s"), "lstm_math", 3)
    assert out["pushed"] is False and "not blessed" in out["reason"]
    out = pusher.run_pusher(src, {"blessed": True}, {"passed": False, "problems": ["x"]},
                            str(tmp_path / "s"), "lstm_math", 3)
    assert out["pushed"] is False and "InfraValidator" in out["reason"]
    assert not os.path.exists(tmp_path / "s" / "lstm_math" / "1")


def blessed_against(base, model_name="lstm_math"):
    """A blessing judged against what is served at ``base`` now."""
    return {"blessed": True, "reasons": [],
            "judged_against": resolve_baseline(str(base), model_name)}


def test_a_push_after_the_evaluation_is_refused_in_one_line(tmp_path):
    base = tmp_path / "s"
    blessing = blessed_against(base)  # judged against an empty base
    assert blessing["judged_against"]["version"] is None
    other = pusher.push(make_model(tmp_path / "other", "other"), str(base), "lstm_math", 3)
    with pytest.raises(pusher.BaselineChanged) as refused:
        pusher.run_pusher(make_model(tmp_path / "export", "m"), blessing, {"passed": True},
                          str(base), "lstm_math", 3)
    message = str(refused.value)
    assert "\n" not in message
    assert (f"from no model to version 1 (sha256 {other['digest'][:12]})" in message
            and "rerun" in message), message
    assert listed(base) == ["1"]
    # judged against that version: pushed
    out = pusher.run_pusher(make_model(tmp_path / "export", "m"), blessed_against(base),
                            {"passed": True}, str(base), "lstm_math", 3)
    assert out["pushed"] is True and out["version"] == 2


def test_a_served_version_whose_files_changed_is_another_baseline(tmp_path):
    base = tmp_path / "s"
    pusher.push(make_model(tmp_path / "a", "a"), str(base), "lstm_math", 3)
    blessing = blessed_against(base)
    (base / "lstm_math" / "1" / "saved_model.pb").write_text("replaced in place")
    with pytest.raises(pusher.BaselineChanged, match="from version 1 .* to version 1 "):
        pusher.run_pusher(make_model(tmp_path / "export", "m"), blessing, {"passed": True},
                          str(base), "lstm_math", 3)
    assert listed(base) == ["1"]


def test_a_blessing_without_its_baseline_or_judged_against_another_model_is_refused(tmp_path):
    src = make_model(tmp_path / "export", "m")
    with pytest.raises(pusher.BaselineChanged, match="does not say which served model"):
        pusher.run_pusher(src, {"blessed": True}, {"passed": True}, str(tmp_path / "s"),
                          "lstm_math", 3)
    # judged where another model is served; the push target serves none
    pusher.push(make_model(tmp_path / "a", "a"), str(tmp_path / "elsewhere"), "lstm_math", 3)
    with pytest.raises(pusher.BaselineChanged) as e:
        pusher.run_pusher(src, blessed_against(tmp_path / "elsewhere"), {"passed": True},
                          str(tmp_path / "s"), "lstm_math", 3)
    message = str(e.value)
    assert "\n" not in message
    assert "judged against version 1 (sha256 " in message and "serves no model" in message
    assert str(tmp_path / "elsewhere") in message and "rerun" in message
    assert not os.path.exists(tmp_path / "s" / "lstm_math" / "1")


def test_a_blessing_holds_wherever_the_same_baseline_is_served(tmp_path):
    """Judged against no model at one serving base: it holds at another empty one; judged
    against a version: it holds where the very same files are that version."""
    src = make_model(tmp_path / "export", "m")
    out = pusher.run_pusher(src, blessed_against(tmp_path / "empty"), {"passed": True},
                            str(tmp_path / "s"), "lstm_math", 3)
    assert out["pushed"] is True and out["version"] == 1
    import shutil

    shutil.copytree(tmp_path / "s" / "lstm_math" / "1", tmp_path / "copy" / "lstm_math" / "1")
    out = pusher.run_pusher(make_model(tmp_path / "export2", "m2"),
                            blessed_against(tmp_path / "copy"), {"passed": True},
                            str(tmp_path / "s"), "lstm_math", 3)
    assert out["pushed"] is True and out["version"] == 2


def test_the_baseline_is_checked_after_taking_the_push_lock(tmp_path, monkeypatch):
    """Another push holding the lock lands first: the waiting push then sees it, refuses."""
    import threading
    import time
    import types

    base = tmp_path / "s"
    (base / "lstm_math").mkdir(parents=True)
    blessing = blessed_against(base)
    waiting = threading.Event()

    def sleep(seconds):
        waiting.set()
        time.sleep(seconds)

    monkeypatch.setattr(pusher, "time", types.SimpleNamespace(monotonic=time.monotonic,
                                                              sleep=sleep))
    outcome = {}

    def push():
        try:
            outcome["result"] = pusher.run_pusher(make_model(tmp_path / "export", "m"), blessing,
                                                  {"passed": True}, str(base), "lstm_math", 3)
        except Exception as e:  # noqa: BLE001 - inspected below
            outcome["error"] = e

    with pusher.push_lock(str(base / "lstm_math"), timeout_s=5):
        thread = threading.Thread(target=push)
        thread.start()
        assert waiting.wait(timeout=60), "the push never waited for the lock"
        make_model(base / "lstm_math" / "1", "landed while the other push waited")
    thread.join(timeout=60)
    assert isinstance(outcome.get("error"), pusher.BaselineChanged), outcome
    assert listed(base) == ["1"]


def test_blessing_threshold_and_regression():
    assert bless(0.9995, 0.999, None, 0.001)["blessed"] is True
    assert bless(0.998, 0.999, None, 0.001)["blessed"] is False
    assert bless(0.9995, 0.999, 0.9999, 0.001)["blessed"] is True
    out = bless(0.9992, 0.999, 0.99999, 0.0005)
    assert out["blessed"] is False and any("regression" in r for r in out["reasons"])


# --------------------------------------------------------------------------------------
# Concurrent pushes (a lock) and object-store pushes (saved_model.pb last).

CONCURRENT = """
import json, sys
from lstm_math.components import pusher
src, base, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
import time
time.sleep(max(0.0, go - time.time()))  # all four start their push at the same moment
print(json.dumps(pusher.push(src, base, "lstm_math", keep_versions=10)))
"""


def test_four_concurrent_pushes_get_four_versions(tmp_path):
    import json
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = tmp_path / "serving"
    for i in range(4):  # enough files that the copies overlap in time without a lock
        src = make_model(tmp_path / f"export{i}", f"m{i}")
        for j in range(50):
            (tmp_path / f"export{i}" / "variables" / f"v{j}").write_text(f"{i}-{j}" * 200)
    go = time.time() + 4
    env = dict(os.environ, PYTHONPATH=repo)
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path / f"export{i}"),
                               str(base), str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(r["version"] for r in results) == [1, 2, 3, 4]
    assert sorted(os.listdir(base / "lstm_math")) == [".push.lock", "1", "2", "3", "4"]
    for r in results:  # each version holds exactly the model its push copied
        assert pusher.content_digest(r["path"]) == pusher.content_digest(r["source"])


def test_push_lock_times_out_naming_the_lock(tmp_path):
    base = tmp_path / "serving" / "lstm_math"
    base.mkdir(parents=True)
    with pusher.push_lock(str(base), timeout_s=5):
        with pytest.raises(pusher.PushLockTimeout, match=r"\.push\.lock"):
            with pusher.push_lock(str(base), timeout_s=0.3):
                pass


def _ram_model(root, marker):
    import tensorflow as tf

    tf.io.gfile.makedirs(f"{root}/variables")
    tf.io.gfile.makedirs(f"{root}/assets")
    for rel, text in (("saved_model.pb", marker), ("variables/variables.index", "idx"),
                      ("variables/variables.data-00000-of-00001", marker * 10),
                      ("assets/coverage.json", "{}")):
        with tf.io.gfile.GFile(f"{root}/{rel}", "w") as f:
            f.write(text)
    return root


def test_object_store_push_moves_saved_model_pb_last(tmp_path, monkeypatch):
    """ram:// (TensorFlow's in-memory file system) stands in for gs://: the gfile path."""
    import uuid

    import tensorflow as tf

    from lstm_math.serving import contract

    base = f"ram://serving-{uuid.uuid4().hex}"
    src = str(make_model(tmp_path / "export", "m1"))
    (tmp_path / "export" / "variables" / "variables.index").write_text("idx")
    moves, seen = [], []
    real_rename = tf.io.gfile.rename

    def recording_rename(a, b, overwrite=False):
        # What a server polling now would see: is a numeric version complete?
        seen.append({v: tf.io.gfile.exists(f"{base}/lstm_math/{v}/saved_model.pb")
                     for v in contract.versions(f"{base}/lstm_math")})
        moves.append(b)
        return real_rename(a, b, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", recording_rename)
    out = pusher.push(src, base, "lstm_math", keep_versions=2)
    assert out["version"] == 1 and out["path"] == f"{base}/lstm_math/1"
    assert moves[-1] == f"{base}/lstm_math/1/saved_model.pb"
    assert len(moves) == 2 and out["file_order"][-1] == "saved_model.pb"
    # Staging name is not a version; no version was listed complete before its last move.
    assert all(not any(s.values()) for s in seen)
    assert [n.rstrip("/") for n in tf.io.gfile.listdir(f"{base}/lstm_math")] == ["1"]
    assert pusher.content_digest(out["path"]) == pusher.content_digest(src)
    # Same model again: no new version; others grow and old ones are pruned.
    assert pusher.push(src, base, "lstm_math", 2)["already_pushed"] is True
    for i in (2, 3):
        out = pusher.push(_ram_model(f"ram://export-{uuid.uuid4().hex}", f"m{i}"), base,
                          "lstm_math", keep_versions=2)
        assert out["version"] == i
    assert contract.versions(f"{base}/lstm_math", complete_only=True) == [2, 3]
    assert out["removed_versions"] == [1]
