import os

import pytest

from components import pusher
from components.evaluator import bless


def make_model(path, marker):
    os.makedirs(path / "variables", exist_ok=True)
    (path / "saved_model.pb").write_text(marker)
    return str(path)


def test_versions_grow_and_old_ones_are_pruned(tmp_path):
    base = tmp_path / "serving"
    pushed = [pusher.push(make_model(tmp_path / f"export{i}", f"m{i}"), str(base), "lstm_math",
                          keep_versions=2)
              for i in range(3)]
    assert [p["version"] for p in pushed] == [1, 2, 3]
    assert [p["removed_versions"] for p in pushed] == [[], [], [1]]
    assert sorted(os.listdir(base / "lstm_math")) == ["2", "3"]
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
    assert sorted(os.listdir(base / "lstm_math")) == ["1"]


def test_staging_left_by_a_dead_push_is_cleaned_up_and_never_served(tmp_path):
    base = tmp_path / "serving"
    pusher.push(make_model(tmp_path / "a", "a"), str(base), "lstm_math", 5)
    dead = base / "lstm_math" / ".incoming-2-999999999"  # no such process
    make_model(dead, "half")
    out = pusher.push(make_model(tmp_path / "b", "b"), str(base), "lstm_math", 5)
    assert out["version"] == 2
    assert sorted(os.listdir(base / "lstm_math")) == ["1", "2"]


def test_crash_mid_push_leaves_serving_base_as_it_was(tmp_path, monkeypatch):
    src = make_model(tmp_path / "export", "m")
    base = tmp_path / "serving"
    pusher.push(src, str(base), "lstm_math", keep_versions=5)
    before = sorted(os.listdir(base / "lstm_math"))

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


def test_blessing_threshold_and_regression():
    assert bless(0.9995, 0.999, None, 0.001)["blessed"] is True
    assert bless(0.998, 0.999, None, 0.001)["blessed"] is False
    assert bless(0.9995, 0.999, 0.9999, 0.001)["blessed"] is True
    out = bless(0.9992, 0.999, 0.99999, 0.0005)
    assert out["blessed"] is False and any("regression" in r for r in out["reasons"])
