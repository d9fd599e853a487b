import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from lstm_math.components import data as data_lib
from lstm_math.components import equations as eq
from lstm_math.components import sampling
from lstm_math.components.data_validation import DataValidationError, run_data_validation
from lstm_math.components import example_gen
from lstm_math.components.example_gen import run_example_gen
from lstm_math.config import coverage_of, load_config
from tests.helpers import digest, lstm_math, read_split


@pytest.fixture(scope="module")
def generated(examples_for):
    overrides = ["task.data.operators=['+', '-', '*', '/']", "task.data.num_examples=4000",
                 "task.data.num_shards=3", "task.data.sampling=uniform"]
    out = pathlib.Path(examples_for("smoke", *overrides))  # shared: read only
    return load_config("smoke", overrides), out, data_lib.read_stats(str(out))


def test_shards_stats_and_splits(generated):
    config, out, stats = generated
    names = sorted(os.listdir(out))
    for split in sampling.SPLITS:
        assert [n for n in names if n.startswith(split + "-")] == [
            f"{split}-{i:05d}-of-00003.tfrecord.gz" for i in range(3)]
    assert "stats.json" in names
    with open(out / "stats.json") as f:
        on_disk = json.load(f)
    total = sum(on_disk["splits"][s]["count"] for s in sampling.SPLITS)
    assert total == 4000
    seen = {}
    for split in sampling.SPLITS:
        rows = read_split(out, split)
        assert len(rows) == on_disk["splits"][split]["count"] > 0
        for text, result in rows:
            assert text not in seen, f"{text} in {seen.get(text)} and {split}"
            seen[text] = split
            assert sampling.split_of(text, [0.7, 0.1, 0.2]) == split
            assert str(eq.parse(text).result) == result  # integer arithmetic, recomputed
    assert len(seen) == 4000  # unique by construction
    ops = on_disk["splits"]["train"]["per_operator"]
    assert set(ops) == {"+", "-", "*", "/"}


def test_same_config_same_bytes(generated, tmp_path):
    config, out, _ = generated
    run_example_gen(config.task.data, str(tmp_path))
    assert digest(tmp_path) == digest(out)


def test_different_seed_different_equations(generated, tmp_path):
    config, out, _ = generated
    config2 = load_config("smoke", ["task.data.operators=['+', '-', '*', '/']",
                                    "task.data.num_examples=4000", "task.data.num_shards=3",
                                    "task.data.seed=1"])
    run_example_gen(config2.task.data, str(tmp_path))
    assert {t for t, _ in read_split(tmp_path, "train")} != {t for t, _ in read_split(out, "train")}


@pytest.mark.slow
def test_same_bytes_with_two_worker_processes(generated, tmp_path):
    config, out, _ = generated
    run_example_gen(config.task.data, str(tmp_path),
                    ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert digest(tmp_path) == digest(out)


def test_validation_passes_then_catches_leakage_and_corruption(generated, tmp_path):
    config, out, _ = generated
    coverage = coverage_of(config)
    report = run_data_validation(str(out), coverage, str(tmp_path / "ok"))
    assert report["passed"] and report["leakage"] == 0

    # Leakage: copy one test record into the train split.
    bad = tmp_path / "leaky"
    tf.io.gfile.makedirs(str(bad))
    for name in os.listdir(out):
        tf.io.gfile.copy(str(out / name), str(bad / name))
    test_record = next(iter(data_lib.raw_dataset(str(out), "test"))).numpy()
    train_records = [r.numpy() for r in tf.data.TFRecordDataset(
        str(out / "train-00000-of-00003.tfrecord.gz"), compression_type="GZIP")]
    with tf.io.TFRecordWriter(str(bad / "train-00000-of-00003.tfrecord.gz"), "GZIP") as w:
        for r in train_records + [test_record]:
            w.write(r)
    with pytest.raises(DataValidationError, match="leakage"):
        run_data_validation(str(bad), coverage, str(tmp_path / "v1"))

    # Corruption: a shard cut short, wherever the cut falls (TensorFlow's reader stops
    # quietly at some cut points of a GZIP stream).
    path = bad / "validation-00001-of-00003.tfrecord.gz"
    data = path.read_bytes()
    for k, keep in enumerate((0.25, 0.5, 0.75, 0.97)):
        path.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(DataValidationError, match="shard corruption in split validation"):
            run_data_validation(str(bad), coverage, str(tmp_path / f"v{k + 2}"))


# --- record encoding -------------------------------------------------------------------

from lstm_math.components.example_records import encode_examples, make_example  # noqa: E402
from lstm_math.config import ConfigError  # noqa: E402


def test_hand_encoded_records_parse_to_the_same_examples_as_tf_train_example():
    equations = [eq.parse(t) for t in ("31 + 87", "3 - 5", "7 / 2", "131 + 83 - 744 * 33",
                                        f"{10**70} * {10**65 + 1}", "0 + 0")]
    results = [e.result for e in equations]
    records = encode_examples(
        [e.text.encode() for e in equations], [str(r).encode() for r in results],
        [e.tag.encode() for e in equations[:4]] + [b"*", b"+"],
        np.array([[len(str(v)) for v in e.operands] + [0] * (4 - len(e.operands))
                  for e in equations]))
    for equation, result, record in zip(equations, results, records):
        ours = tf.train.Example.FromString(record)
        reference = tf.train.Example.FromString(make_example(equation, result))
        digits = list(ours.features.feature["operand_digits"].int64_list.value)
        ours.features.feature["operand_digits"].int64_list.value[:] = [d for d in digits if d]
        assert ours == reference
    parsed = tf.io.parse_example(tf.constant(records), {
        "equation": tf.io.FixedLenFeature([], tf.string),
        "result": tf.io.FixedLenFeature([], tf.string),
        "operator": tf.io.FixedLenFeature([], tf.string)})
    assert parsed["equation"].numpy().tolist()[4] == f"{10**70} * {10**65 + 1}".encode()
    assert parsed["result"].numpy().tolist()[1] == b"-2"
    assert parsed["operator"].numpy().tolist()[3] == b"mixed"


# --- statistics, report, configs ----------------------------------------------------------

def test_stats_match_the_records_and_report_is_written(generated):
    _, out, stats = generated
    assert stats["duplicates_dropped"] == 0 and stats["sampling"] == "uniform"
    for split in sampling.SPLITS:
        rows = read_split(out, split)
        st = stats["splits"][split]
        results = [int(r) for _, r in rows]
        assert st["result_min"] == min(results) and st["result_max"] == max(results)
        assert sum(st["per_operand_digits"].values()) == st["count"] == len(rows)
        assert sum(st["result_length"].values()) == len(rows)
        lengths = {}
        for _, r in rows:
            lengths[str(len(r))] = lengths.get(str(len(r)), 0) + 1
        assert st["result_length"] == lengths
        ops = {}
        for text, _ in rows:
            ops[eq.parse(text).tag] = ops.get(eq.parse(text).tag, 0) + 1
        assert st["per_operator"] == ops
    html = (out / "stats.html").read_text()
    assert "per_operator" not in html and "operand digit lengths" in html
    assert str(stats["splits"]["test"]["count"]) in html


def test_mixed_stratified_exhaustive_configs(tmp_path):
    config = load_config("mixed", ["task.data.num_examples=3000", "task.data.operand_max=20",
                                   "task.data.num_shards=2", "task.data.sampling=stratified"])
    stats = run_example_gen(config.task.data, str(tmp_path / "mixed"))
    assert set(stats["splits"]["train"]["per_operator"]) == {"mixed"}
    digit_pairs = set(stats["splits"]["train"]["per_operand_digits"])
    assert {"1x1x1", "2x2x2", "1x2x1"} <= digit_pairs
    rows = read_split(tmp_path / "mixed", "train")
    for text, result in rows[:300]:
        assert str(eq.parse(text).result) == result
    report = run_data_validation(str(tmp_path / "mixed"), coverage_of(config), str(tmp_path / "v"))
    assert report["passed"]

    config = load_config("smoke", ["task.data.exhaustive=true", "task.data.operand_max=30"])
    stats = run_example_gen(config.task.data, str(tmp_path / "all"))
    assert sum(s["count"] for s in stats["splits"].values()) == 31 * 31
    # the summary names what was generated: every equation, not "uniform sampling"
    assert example_gen.summary_text(stats).startswith("961 equations (every equation of a "
                                                      "space of 961")
    assert stats["splits"]["train"]["result_max"] == 60 or stats["splits"]["test"][
        "result_max"] == 60 or stats["splits"]["validation"]["result_max"] == 60


@pytest.mark.parametrize("override,field", [
    ("task.data.sampling=random", "task.data.sampling"),
    ("task.data.operand_max=1000000000000", "task.data.operand_max"),
    ("task.data.exhaustive=true", None),  # 10^6 equations: fine
    ("task.data.num_operands=12", "task.data.num_operands"),
])
def test_bad_data_configs_fail_fast_naming_the_field(override, field):
    overrides = [override]
    if "num_operands" in override:
        overrides.append("task.data.operators=['+', '-', '*', '/']")
    if "operand_max=1000000000000" in override:
        overrides += ["task.data.num_operands=6"]
    if field is None:
        load_config("default", overrides)
        return
    with pytest.raises(ConfigError) as info:
        load_config("default", overrides)
    assert str(info.value).startswith(field + ":")


# --- validation --------------------------------------------------------------------------

def _copy(out, dest):
    tf.io.gfile.makedirs(str(dest))
    for name in os.listdir(out):
        tf.io.gfile.copy(str(out / name), str(dest / name), overwrite=True)
    return dest


def _append(path, records):
    old = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
    with tf.io.TFRecordWriter(str(path), "GZIP") as w:
        for r in old + records:
            w.write(r)


def _record(text, result):
    e = eq.parse(text) if "=" not in text else eq.Equation((1, 1), ("+",))
    feature = {
        "equation": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
        "result": tf.train.Feature(bytes_list=tf.train.BytesList(value=[result.encode()])),
        "operator": tf.train.Feature(bytes_list=tf.train.BytesList(value=[e.tag.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _in_split(text):
    return sampling.split_of(text, [0.7, 0.1, 0.2])


@pytest.mark.parametrize("text,result,message", [
    ("1 + 1 = 2", "2", "outside the vocabulary"),
    ("999 * 99", "98901", "longer than the model's output length 4"),
    ("12 + 13", "26", "stored result '26' for '12 \\+ 13'"),
])
def test_validation_catches_bad_records(generated, tmp_path, text, result, message):
    config, out, _ = generated
    coverage = coverage_of(config)
    assert coverage.max_result_length == 4
    bad = _copy(out, tmp_path / "bad")
    _append(bad / f"{_in_split(text)}-00000-of-00003.tfrecord.gz", [_record(text, result)])
    with pytest.raises(DataValidationError, match=message):
        run_data_validation(str(bad), coverage, str(tmp_path / "v"))
    report = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert not report["passed"] and report["problems"]


def test_validation_catches_empty_split_missing_shard_and_duplicates(generated, tmp_path):
    config, out, _ = generated
    coverage = coverage_of(config)
    empty = _copy(out, tmp_path / "empty")
    for i in range(3):
        with tf.io.TFRecordWriter(str(empty / f"validation-{i:05d}-of-00003.tfrecord.gz"), "GZIP"):
            pass
    with pytest.raises(DataValidationError, match="split 'validation' is empty"):
        run_data_validation(str(empty), coverage, str(tmp_path / "v1"))
    missing = _copy(out, tmp_path / "missing")
    os.remove(missing / "test-00002-of-00003.tfrecord.gz")
    with pytest.raises(DataValidationError, match="test-00002-of-00003.tfrecord.gz is missing"):
        run_data_validation(str(missing), coverage, str(tmp_path / "v2"))
    dup = _copy(out, tmp_path / "dup")
    first = next(iter(tf.data.TFRecordDataset(
        str(dup / "train-00000-of-00003.tfrecord.gz"), compression_type="GZIP"))).numpy()
    _append(dup / "train-00001-of-00003.tfrecord.gz", [first])
    with pytest.raises(DataValidationError, match="1 duplicate equations in split 'train'"):
        run_data_validation(str(dup), coverage, str(tmp_path / "v3"))


def test_validation_samples_the_recomputation_on_big_splits(generated, tmp_path):
    config, out, stats = generated
    report = run_data_validation(str(out), coverage_of(config), str(tmp_path), max_recompute=100)
    total = sum(s["count"] for s in stats["splits"].values())
    assert report["passed"] and 250 <= report["recomputed"] < total / 4


def test_summary_names_counts_sampling_and_shares(generated):
    from lstm_math.components.example_gen import summary_text

    _, _, stats = generated
    text = summary_text(stats)
    assert text.startswith("4000 equations (uniform sampling of a space of 39900")
    for split in sampling.SPLITS:
        assert f"{split:<11}{stats['splits'][split]['count']:>10}" in text
    assert "duplicates dropped: 0" in text and "train operand digits: 1x1:" in text


@pytest.mark.slow
def test_generate_cli_writes_shards_stats_report_and_logs_a_summary(tmp_path):

    proc = lstm_math("generate", "--config", "smoke", "--set", "task.data.num_examples=500",
                     "--set", "task.data.sampling=stratified", "--output", str(tmp_path))
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        s: json.loads((tmp_path / "stats.json").read_text())["splits"][s]["count"]
        for s in sampling.SPLITS}
    assert "500 equations (stratified sampling" in proc.stderr
    assert (tmp_path / "stats.html").exists()


def test_two_to_three_operands_in_one_data_set(tmp_path):
    config = load_config("mixed", ["task.data.num_examples=3000", "task.data.operand_max=20",
                                   "task.data.num_shards=2", "task.data.min_operands=2"])
    stats = run_example_gen(config.task.data, str(tmp_path / "gen"))
    assert stats["min_operands"] == 2 and stats["num_operands"] == 3
    assert "2 to 3 operands" in example_gen.summary_text(stats)
    train = stats["splits"]["train"]
    assert set(train["per_operator"]) == {"+", "-", "*", "/", "mixed"}
    assert {"1x1", "2x2", "1x1x1", "2x2x2"} <= set(train["per_operand_digits"])
    counted = {}
    for split in sampling.SPLITS:
        for text, result in read_split(tmp_path / "gen", split):
            e = eq.parse(text)
            assert str(e.result) == result
            counted[len(e.operands)] = counted.get(len(e.operands), 0) + 1
    assert sum(counted.values()) == 3000 and set(counted) == {2, 3}
    # the feature operand_digits holds only the real operands
    raw = next(iter(data_lib.raw_dataset(str(tmp_path / "gen"), "train").batch(400)))
    parsed = tf.io.parse_example(raw, {"equation": tf.io.FixedLenFeature([], tf.string),
                                       "operand_digits": tf.io.VarLenFeature(tf.int64)})
    digits = tf.sparse.to_dense(parsed["operand_digits"]).numpy()
    for text, row in zip(parsed["equation"].numpy().astype(str), digits):
        assert [d for d in row.tolist() if d] == [len(p) for p in text.split(" ")[::2]]
    coverage = coverage_of(config)
    assert coverage.min_operands == 2 and coverage.num_operands == 3
    report = run_data_validation(str(tmp_path / "gen"), coverage, str(tmp_path / "v"))
    assert report["passed"]


@pytest.mark.parametrize("value", [1, 4, "two"])
def test_min_operands_must_lie_between_two_and_num_operands(value):
    with pytest.raises(ConfigError) as info:
        load_config("mixed", [f"task.data.min_operands={value}"])
    assert str(info.value).startswith("task.data.min_operands:")
