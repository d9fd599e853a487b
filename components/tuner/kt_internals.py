"""Every use of keras-tuner's private modules and attributes, in one place.

Written against keras-tuner ``KERAS_TUNER_PIN`` (setup.py pins the same range); tests/
test_keras_tuner_internals.py checks each of them on the installed version and fails naming
the one that changed. The rest of ``components.tuner`` uses keras-tuner's public API
(``kt.Tuner``, ``kt.HyperModel``, ``kt.HyperParameters``, the oracles, ``kt.Objective``,
``keras_tuner.engine.trial.TrialStatus``) and these functions; nothing else imports
``keras_tuner.src`` or touches an attribute with a leading underscore.

What is used, and why (keras-tuner has no public way to do it):

* distributed search (``keras_tuner.src.distribute``, ``keras_tuner.src.protos``): the
  chief's oracle servicer and its exit test, polled every 0.5 s instead of keras-tuner's
  20 s loop; the gRPC stub the worker's watch uses to ask the chief; the client's per-call
  deadline (a module global, one hour).
* ``Oracle._retry_queue``: trials waiting to be rerun (the chief serves while any wait).
* ``Oracle.ongoing_trials`` / ``Oracle.tuner_ids``: progress lines of the chief.
* ``Oracle.max_trials`` on the Hyperband oracle, whose constructor takes no trial budget.
* ``Tuner._get_tensorboard_dir`` / ``Tuner._configure_tensorboard_dir``: the hooks that
  place each trial's TensorBoard run (``logs/trial-01``, not ``logs/0/execution0``).
* ``kt.Tuner.__init__`` called on a ``kt.Hyperband`` subclass: Hyperband with an oracle
  built here (with a time budget), not the one its constructor would build.
"""

from __future__ import annotations

KERAS_TUNER_PIN = ">=1.4.7,<1.5"
# The private names this module relies on, checked by the test on the installed version.
PRIVATE_MODULES = ("keras_tuner.src.protos", "keras_tuner.src.distribute.oracle_chief",
                   "keras_tuner.src.distribute.oracle_client")
TUNER_HOOKS = ("_get_tensorboard_dir", "_configure_tensorboard_dir")


def installed_version() -> str:
    import keras_tuner

    return keras_tuner.__version__


# -- distributed search ------------------------------------------------------------------


def oracle_service():
    """(messages module, gRPC module) of keras-tuner's oracle service."""
    from keras_tuner.src import protos

    return protos.get_service(), protos.get_service_grpc()


def oracle_servicer(oracle):
    """The chief's gRPC servicer around ``oracle`` (keras-tuner's own)."""
    from keras_tuner.src.distribute import oracle_chief

    return oracle_chief.OracleServicer(oracle)


def chief_may_exit(servicer, oracle) -> bool:
    """keras-tuner's own test: a worker asked to stop and no trial is left to anyone."""
    from keras_tuner.src.distribute import oracle_chief

    return bool(servicer.stop_triggered) and bool(oracle_chief.exit_chief(oracle))


def set_client_timeout(seconds: float) -> None:
    """The worker's per-call deadline to the chief (keras-tuner: one hour)."""
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = seconds


# -- oracle state --------------------------------------------------------------------------


def trials_to_retry(oracle) -> list:
    """Trial ids the oracle will hand out again (failed executions to rerun)."""
    return list(oracle._retry_queue)


def running_trials(oracle) -> dict:
    """{tuner id: trial id} of the trials running now."""
    return {k: t.trial_id for k, t in oracle.ongoing_trials.items()}


def registered_tuners(oracle) -> list:
    """The tuners (chief and workers) that asked this oracle for trials."""
    return sorted(oracle.tuner_ids)


def set_trial_budget(oracle, max_trials: int) -> None:
    """At most ``max_trials`` trials (the Hyperband oracle's constructor takes no budget)."""
    oracle.max_trials = max_trials


# -- tuner hooks ---------------------------------------------------------------------------


class TrialLogDirs:
    """Tuner mixin: where each trial's TensorBoard run goes, through keras-tuner's private
    hooks. Subclasses define ``trial_log_dir`` and ``configure_trial_callbacks``."""

    def trial_log_dir(self, logdir: str, trial_id: str, execution: int) -> str:
        raise NotImplementedError

    def configure_trial_callbacks(self, callbacks, trial, execution: int) -> None:
        """Called before keras-tuner configures its own TensorBoard callbacks of a trial."""

    def _get_tensorboard_dir(self, logdir, trial_id, execution):
        return self.trial_log_dir(logdir, trial_id, execution)

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        self.configure_trial_callbacks(callbacks, trial, execution)
        super()._configure_tensorboard_dir(callbacks, trial, execution)


def init_with_oracle(tuner, oracle, hypermodel, **kwargs) -> None:
    """Initialises a ``kt.Hyperband`` subclass as a plain ``kt.Tuner`` with ``oracle``
    (``kt.Hyperband.__init__`` builds an oracle of its own)."""
    import keras_tuner as kt

    kt.Tuner.__init__(tuner, oracle=oracle, hypermodel=hypermodel, **kwargs)
