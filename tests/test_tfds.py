"""The TFDS builder yields exactly the equations the trainer reads from ExampleGen."""

import collections

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import lstm_math.components.tfds_dataset  # noqa: F401  (registers lstm_math)
from lstm_math.components import data as data_lib
from lstm_math.components import equations as eq
from lstm_math.components import sampling
from lstm_math.config import load_config


def trainer_multiset(examples_dir, split):
    """What the trainer consumes: the tf.data input pipeline over the ExampleGen shards."""
    out = collections.Counter()
    for batch in data_lib.features_dataset(str(examples_dir), split, 1024):
        out.update(zip(batch["equation"].numpy().tolist(), batch["result"].numpy().tolist()))
    return out


def tfds_multiset(dataset):
    out = collections.Counter()
    for ex in tfds.as_numpy(dataset):
        out[(ex["equation"], ex["result"])] += 1
    return out


@pytest.fixture(scope="module")
def trainer_data(examples_for):
    return examples_for("smoke")


def test_tfds_load_and_as_dataset_give_the_trainers_equations(trainer_data, tmp_path):
    assert "smoke" in [c.name for c in tfds.builder_cls("lstm_math").BUILDER_CONFIGS]
    data_dir = str(tmp_path / "tfds")
    splits = tfds.load("lstm_math/smoke", data_dir=data_dir)
    builder = tfds.builder("lstm_math/smoke", data_dir=data_dir)
    total = 0
    for split in sampling.SPLITS:
        want = trainer_multiset(trainer_data, split)
        assert want and max(want.values()) == 1
        assert tfds_multiset(splits[split]) == want
        assert tfds_multiset(builder.as_dataset(split=split)) == want
        assert builder.info.splits[split].num_examples == sum(want.values())
        total += sum(want.values())
    assert total == load_config("smoke").task.data.num_examples
    example = next(iter(tfds.as_numpy(builder.as_dataset(split="train").take(1))))
    assert example["operator"] == b"+" and example["operand_digits"].dtype == "int64"
    assert len(example["operand_digits"]) == 2
    text, result = next(iter(tfds.as_numpy(builder.as_dataset(split="test",
                                                               as_supervised=True))))
    assert str(eq.parse(text.decode()).result) == result.decode()


def test_tfds_packages_an_existing_examplegen_output(trainer_data, tmp_path):
    builder = tfds.builder("lstm_math/smoke", data_dir=str(tmp_path),
                           examples_dir=str(trainer_data))
    builder.download_and_prepare()
    for split in sampling.SPLITS:
        assert tfds_multiset(builder.as_dataset(split=split)) == trainer_multiset(
            trainer_data, split)
    assert not tf.io.gfile.exists(str(tmp_path / "downloads" / "lstm_math_smoke_examples"))
