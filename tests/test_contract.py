"""The serving contract's one rule for version directories, shared by Pusher, Evaluator and
server (TF Serving's rule: positive ASCII decimal integers within int64)."""

import os

import pytest

from lstm_math.serving import contract


@pytest.mark.parametrize("name,expected", [
    ("1", 1), ("42", 42), ("007", 7), ("9223372036854775807", 2 ** 63 - 1), ("3/", 3),
    ("0", None), ("9223372036854775808", None), ("²", None), ("٣", None), ("+3", None),
    (" 3", None), ("3 ", None), ("-1", None), ("", None), ("1e3", None), ("0x10", None),
    (".incoming-2-123", None), ("１", None),
])
def test_parse_version_accepts_only_ascii_decimals_within_int64(name, expected):
    assert contract.parse_version(name) == expected


def test_versions_skip_odd_names_and_warn_once(tmp_path, caplog):
    for name in ["1", "10", "2", "²", "99999999999999999999", ".staging", "notes"]:
        (tmp_path / name).mkdir()
    (tmp_path / "10" / "saved_model.pb").write_text("x")
    with caplog.at_level("WARNING", logger="lstm_math.serving.contract"):
        assert contract.versions(str(tmp_path)) == [1, 2, 10]
        assert contract.versions(str(tmp_path)) == [1, 2, 10]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3 and not any(".staging" in m for m in warned)  # once each
    assert contract.versions(str(tmp_path), complete_only=True) == [10]
    assert contract.latest_version(str(tmp_path)) == 10
    assert contract.versions(str(tmp_path / "missing")) == []
    assert contract.latest_version(str(tmp_path / "missing")) is None


def test_bucket_rows_matches_the_graph_buckets():
    assert [contract.bucket_rows(n) for n in (1, 2, 3, 5, 1000, 1024, 1025, 3000)] == [
        1, 2, 4, 8, 1024, 1024, 2048, 3072]
    assert contract.LARGEST_BUCKET == max(contract.JIT_BATCH_BUCKETS)


def test_warmup_file_sits_where_tf_serving_reads_it():
    assert contract.WARMUP_FILE == os.path.join("assets.extra", "tf_serving_warmup_requests")
