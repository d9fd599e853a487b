"""keras-tuner's private modules and attributes: used only in components/tuner/kt_internals.py,
pinned to the range setup.py installs, and each one checked on the installed version so that
an upgrade that moves one fails here, naming it, rather than in the middle of a search."""

import ast
import importlib
import inspect
import os
import re

import keras_tuner as kt
import pytest

from lstm_math.components.tuner import kt_internals
from tests.helpers import REPO

PIN_SOURCE = "setup.py's keras-tuner pin"


def _version_tuple(text):
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def test_the_pin_is_setup_pys_and_the_installed_version_is_inside_it():
    with open(os.path.join(REPO, "setup.py")) as f:
        pins = re.findall(r'"keras-tuner([^"]*)"', f.read())
    assert pins == [kt_internals.KERAS_TUNER_PIN], (
        f"{PIN_SOURCE} {pins} differs from kt_internals.KERAS_TUNER_PIN "
        f"{kt_internals.KERAS_TUNER_PIN}: recheck kt_internals against the new range")
    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", kt_internals.KERAS_TUNER_PIN).groups()
    installed = _version_tuple(kt_internals.installed_version())
    assert _version_tuple(low) <= installed < _version_tuple(high), (
        f"keras-tuner {kt_internals.installed_version()} is outside "
        f"{kt_internals.KERAS_TUNER_PIN}, the range kt_internals was written for")


@pytest.mark.parametrize("module", kt_internals.PRIVATE_MODULES)
def test_the_private_modules_exist(module):
    try:
        importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"keras-tuner {kt_internals.installed_version()}: {module} is gone ({e}); "
                    f"kt_internals needs updating")


def test_the_distributed_internals_have_the_shape_used():
    from keras_tuner.src.distribute import oracle_chief, oracle_client

    v = kt_internals.installed_version()
    messages, service = kt_internals.oracle_service()
    assert hasattr(messages, "GetSpaceRequest"), f"keras-tuner {v}: no GetSpaceRequest message"
    for name in ("OracleStub", "add_OracleServicer_to_server"):
        assert hasattr(service, name), f"keras-tuner {v}: the oracle gRPC module lacks {name}"
    assert isinstance(oracle_client.TIMEOUT, (int, float)), (
        f"keras-tuner {v}: oracle_client.TIMEOUT is no longer the per-call deadline")
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"),
                                           max_trials=2)
    # exit_chief(oracle): true once no trial runs and no worker is registered
    assert oracle_chief.exit_chief(oracle) is True, f"keras-tuner {v}: exit_chief changed"
    oracle.tuner_ids.add("worker-1")
    assert oracle_chief.exit_chief(oracle) is False, f"keras-tuner {v}: exit_chief changed"
    oracle.tuner_ids.clear()
    servicer = kt_internals.oracle_servicer(oracle)
    assert servicer.stop_triggered is False, (
        f"keras-tuner {v}: OracleServicer.stop_triggered is gone")
    assert kt_internals.chief_may_exit(servicer, oracle) is False
    old = oracle_client.TIMEOUT
    try:
        kt_internals.set_client_timeout(7)
        assert oracle_client.TIMEOUT == 7
    finally:
        oracle_client.TIMEOUT = old


def test_the_oracle_attributes_used_exist():
    v = kt_internals.installed_version()
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"),
                                           max_trials=2)
    for name in ("_retry_queue", "ongoing_trials", "tuner_ids", "max_trials"):
        assert hasattr(oracle, name), f"keras-tuner {v}: Oracle.{name} is gone"
    assert kt_internals.trials_to_retry(oracle) == []
    assert kt_internals.running_trials(oracle) == {} and kt_internals.registered_tuners(oracle) == []
    hyperband = kt.oracles.HyperbandOracle(objective=kt.Objective("score", "max"), max_epochs=4)
    kt_internals.set_trial_budget(hyperband, 3)
    assert hyperband.remaining_trials() == 3, (
        f"keras-tuner {v}: the Hyperband oracle ignores Oracle.max_trials")


def test_the_tuner_hooks_exist_with_the_signatures_overridden():
    v = kt_internals.installed_version()
    expected = {"_get_tensorboard_dir": ["self", "logdir", "trial_id", "execution"],
                "_configure_tensorboard_dir": ["self", "callbacks", "trial", "execution"]}
    for name in kt_internals.TUNER_HOOKS:
        hook = getattr(kt.Tuner, name, None)
        assert hook is not None, f"keras-tuner {v}: Tuner.{name} is gone"
        assert list(inspect.signature(hook).parameters) == expected[name], (
            f"keras-tuner {v}: Tuner.{name} changed its signature")
    # Tuner.__init__ still takes the oracle Hyperband's own constructor would build
    assert {"oracle", "hypermodel"} <= set(inspect.signature(kt.Tuner.__init__).parameters)
    assert issubclass(kt.Hyperband, kt.Tuner)


def test_the_trial_log_dir_hook_is_what_keras_tuner_calls(tmp_path):
    """keras-tuner's own code path: Tuner._configure_tensorboard_dir -> our hook, and
    keras-tuner's own TensorBoard callbacks get the directory from _get_tensorboard_dir."""
    import keras

    from lstm_math.components.tuner.records import SearchTuner

    class HM(kt.HyperModel):
        def build(self, hp):
            return keras.Sequential([keras.layers.Dense(1)])

    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("loss", "min"),
                                           max_trials=1)
    tuner = SearchTuner(oracle, HM(), directory=str(tmp_path), project_name="p")
    trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id="4")
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "logs"))
    tuner._configure_tensorboard_dir([board], trial, 0)
    assert board.log_dir == str(tmp_path / "logs" / "trial-05")


def test_no_other_module_reaches_into_keras_tuner_internals():
    """Only kt_internals imports keras_tuner.src or names a keras-tuner private attribute."""
    private = ("_retry_queue", "_get_tensorboard_dir", "_configure_tensorboard_dir",
               "stop_triggered", "oracle_client", "oracle_chief", "ongoing_trials",
               "tuner_ids", "convert_hyperparams_to_hparams")
    offenders = []
    for folder in ("components", "pipeline", "serving"):
        for dirpath, _, files in os.walk(os.path.join(REPO, folder)):
            for fname in files:
                path = os.path.join(dirpath, fname)
                if not fname.endswith(".py") or path.endswith(os.path.join("tuner",
                                                                           "kt_internals.py")):
                    continue
                with open(path) as f:
                    text = f.read()
                tree = ast.parse(text)
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                                 else [node.module or ""])
                        offenders += [(path, n) for n in names if n.startswith("keras_tuner.")
                                      and not n.startswith(("keras_tuner.engine",
                                                            "keras_tuner.oracles"))]
                    if isinstance(node, ast.Attribute) and node.attr in private:
                        offenders.append((path, node.attr))
    assert offenders == [], [(os.path.relpath(p, REPO), n) for p, n in offenders]
