import hashlib
import json
import os

import pytest
import tensorflow as tf

from components import data as data_lib
from components import equations as eq
from components.data_validation import DataValidationError, run_data_validation
from components.example_gen import run_example_gen
from pipeline.config import coverage_of, load_config


def digest(directory):
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def read_split(directory, split):
    rows = []
    for batch in data_lib.features_dataset(str(directory), split, 512):
        rows += list(zip(batch["equation"].numpy().astype(str), batch["result"].numpy().astype(str)))
    return rows


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    config = load_config("smoke", ["task.data.operators=['+', '-', '*', '/']",
                                   "task.data.num_examples=4000", "task.data.num_shards=3"])
    out = tmp_path_factory.mktemp("gen")
    stats = run_example_gen(config.task.data, str(out))
    return config, out, stats


def test_shards_stats_and_splits(generated):
    config, out, stats = generated
    names = sorted(os.listdir(out))
    for split in eq.SPLITS:
        assert [n for n in names if n.startswith(split + "-")] == [
            f"{split}-{i:05d}-of-00003.tfrecord.gz" for i in range(3)]
    assert "stats.json" in names
    with open(out / "stats.json") as f:
        on_disk = json.load(f)
    total = sum(on_disk["splits"][s]["count"] for s in eq.SPLITS)
    assert total == 4000
    seen = {}
    for split in eq.SPLITS:
        rows = read_split(out, split)
        assert len(rows) == on_disk["splits"][split]["count"] > 0
        for text, result in rows:
            assert text not in seen, f"{text} in {seen.get(text)} and {split}"
            seen[text] = split
            assert eq.split_of(text, [0.7, 0.1, 0.2]) == split
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

    # Corruption: truncate a shard.
    path = bad / "validation-00001-of-00003.tfrecord.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataValidationError, match="corruption"):
        run_data_validation(str(bad), coverage, str(tmp_path / "v2"))
