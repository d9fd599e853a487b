"""Each node's fingerprint covers exactly what the node is given (no training needed).

For every node and every field of the config: changing the field changes the node's
fingerprint if and only if the node is given it (its declared config values, or a value
its resolved inputs are computed from) and the field is not a runtime field; runtime
values the node is given (Beam options, the strategy, a progress interval) and fields no
node reads leave it alone. Nothing here names a field by hand except the two cases that
motivated it, checked on top.
"""

import dataclasses
import os

import pytest

from lstm_math.config import ConfigError, PipelineConfig, load_config
from lstm_math.config.fields import fingerprint_value
from lstm_math.pipeline.artifacts import Artifact
from lstm_math.pipeline.pipeline import (Params, config_value, create_pipeline, params_of,
                                         resolve)
from lstm_math.pipeline.runner import LocalRunner


def _fields(obj, prefix=""):
    """(dotted path, is a runtime field) of every leaf field of a config."""
    for f in dataclasses.fields(obj):
        path = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _fields(value, path + ".")
        else:
            yield path, f.metadata.get("fingerprint", True) is False  # runtime_field


def _other(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value + (value[:1] or ["x"])
    if isinstance(value, dict):
        return {**value, "another": 1}
    if value is None:
        return 1
    raise AssertionError(f"no other value for {value!r}")


def _replace(obj, path: str, value):
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _replace(getattr(obj, head), rest, value)})


def _under(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp")
    return load_config("smoke", [f"runtime.pipeline_root={root / 'artifacts'}",
                                 f"pusher.serving_base={root / 'served'}"])


def _in_fingerprint(config: PipelineConfig, path: str) -> bool:
    """Whether the field at ``path`` goes into fingerprints of this config at all."""
    node = fingerprint_value(config)
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _fingerprint(config: PipelineConfig, name: str) -> str:
    pipeline = create_pipeline(config)
    upstream = {n.name: Artifact(n.name, "", f"fp-{n.name}", {}) for n in pipeline.nodes}
    return LocalRunner(config).fingerprint(pipeline, name, upstream)


def _resolved_identity(config: PipelineConfig, name: str) -> dict:
    node = create_pipeline(config).node(name)
    return {k: node.resolvers[k].identity_of(v) for k, v in resolve(node, config).items()}


FIELDS = list(_fields(PipelineConfig()))
NODES = [n.name for n in create_pipeline(PipelineConfig()).nodes]


def test_the_fields_cover_the_whole_config():
    paths = [p for p, _ in FIELDS]
    assert len(paths) > 60 and "trainer.optimizer.learning_rate" in paths
    assert ("trainer.progress_every_s", True) in FIELDS  # a runtime field


@pytest.mark.parametrize("name", NODES)
def test_a_field_changes_a_fingerprint_iff_the_node_is_given_it(base, name):
    """A declared config field is fingerprinted; a resolver's field through what it resolves
    to (its identity: the Evaluator's baseline is the served version and content, so another
    empty serving base is the same baseline, another served model is not)."""
    node = create_pipeline(base).node(name)
    resolver_paths = [p for r in node.resolvers.values() for p in r.params.values()]
    given = list(node.reads().values())
    before = _fingerprint(base, name)
    wrong = []
    for path, runtime in FIELDS:
        other = _replace(base, path, _other(config_value(base, path)))
        if not (runtime or _in_fingerprint(base, path) or _in_fingerprint(other, path)):
            # a field its section leaves out while it does nothing (trainer.finish.then
            # while no second stage runs): checked where it runs (test_trainer)
            assert path.startswith("trainer.finish.then."), path
            continue
        try:
            changed = _fingerprint(other, name) != before
        except ConfigError as e:  # a resolver refusing a made-up path, naming the field
            assert _under(path, resolver_paths) and str(e).startswith(path + ":"), (path, e)
            continue
        expected = not runtime and (
            _under(path, list(node.config.values()))
            or (_under(path, resolver_paths)
                and _resolved_identity(other, name) != _resolved_identity(base, name)))
        if changed != expected:
            wrong.append(f"{path}: {'changes' if changed else 'does not change'} it"
                         f" ({'given' if _under(path, given) else 'not given'}"
                         f"{', runtime' if runtime else ''})")
    assert wrong == []


@pytest.mark.parametrize("name", NODES)
def test_a_node_is_given_only_what_it_declares(base, name):
    node = create_pipeline(base).node(name)
    params = params_of(node, base)
    assert set(params) == set(node.config) | set(node.runtime)
    for param, path in {**node.config, **node.runtime}.items():
        assert params[param] == config_value(base, path)
    with pytest.raises(AttributeError, match=f"{name} declared no config input 'cluster'"):
        params.cluster  # noqa: B018


def test_a_progress_interval_does_not_retrain(base):
    faster = _replace(base, "trainer.progress_every_s", 1.0)
    assert _fingerprint(faster, "Trainer") == _fingerprint(base, "Trainer")
    assert params_of(create_pipeline(faster).node("Trainer"), faster).trainer \
        .progress_every_s == 1.0  # it is still given


def test_params_are_read_only():
    params = Params("X", {"a": 1})
    assert params.a == 1 and dict(params) == {"a": 1}
    with pytest.raises(AttributeError):
        params.a = 2


def test_the_evaluator_fingerprint_follows_the_served_model_not_where_it_is_served(tmp_path):
    from lstm_math.components import pusher

    def config(served):
        return load_config("smoke", [f"runtime.pipeline_root={tmp_path / 'artifacts'}",
                                     f"pusher.serving_base={served}"])

    empty_a, empty_b = _fingerprint(config(tmp_path / "a"), "Evaluator"), _fingerprint(
        config(tmp_path / "b"), "Evaluator")
    assert empty_a == empty_b  # no model either way
    model = tmp_path / "model"
    os.makedirs(model / "variables")
    (model / "saved_model.pb").write_text("a model")
    pusher.push(str(model), str(tmp_path / "a"), "lstm_math", 3)
    served_a = _fingerprint(config(tmp_path / "a"), "Evaluator")
    assert served_a != empty_a  # a model served now: a new evaluation
    pusher.push(str(model), str(tmp_path / "c"), "lstm_math", 3)
    assert _fingerprint(config(tmp_path / "c"), "Evaluator") == served_a  # the same files
    (tmp_path / "c" / "lstm_math" / "1" / "saved_model.pb").write_text("replaced in place")
    assert _fingerprint(config(tmp_path / "c"), "Evaluator") != served_a


def test_the_trainer_fingerprint_follows_the_warm_start_model_not_where_it_lives(tmp_path):
    def config(warm_start):
        return load_config("smoke", [f"runtime.pipeline_root={tmp_path / 'artifacts'}",
                                     f"trainer.warm_start={warm_start}"])

    for place in ("a", "b", "c"):
        os.makedirs(tmp_path / place)
    (tmp_path / "a" / "model.keras").write_bytes(b"weights")
    (tmp_path / "b" / "model.keras").write_bytes(b"weights")
    (tmp_path / "c" / "model.keras").write_bytes(b"other weights")
    fresh = _fingerprint(config(""), "Trainer")
    at_a = _fingerprint(config(tmp_path / "a"), "Trainer")
    assert at_a != fresh
    assert _fingerprint(config(tmp_path / "b" / "model.keras"), "Trainer") == at_a
    assert _fingerprint(config(tmp_path / "c"), "Trainer") != at_a
