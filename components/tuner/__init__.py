"""Tuner: a keras-tuner search over the model and optimizer hyperparameters; objective =
validation exact match.

* Search space from ``tuner.search_space``: each key is a ``trainer.model.*`` or
  ``trainer.optimizer.*`` field, each value a list of choices or a range
  ``{min, max, step?, sampling?}``; algorithm ``random``, ``bayesian`` or ``hyperband``;
  budget ``max_trials`` x ``epochs`` x ``steps_per_trial_epoch`` and an optional wall-clock
  ``max_seconds`` (no trial starts after it).
* Every trial trains through the Trainer's own code (``lstm_math.components.trainer.compile_model``,
  ``choose_strategy``, ``lstm_math.components.data.training_dataset``); the datasets are built inside
  ``HyperModel.fit`` from the trial's hyperparameters (``reverse_output`` changes the targets).
* The keras-tuner project lives under the output directory, so a search killed at any
  point and restarted with the same command continues: finished trials are kept, the
  interrupted one runs again.
* Distributed: keras-tuner's own mode (one chief serving the oracle, workers running
  trials; ``lstm-math tune --role chief|worker``). A worker that cannot reach the chief for
  ``--chief-timeout`` seconds exits with status 3 and says so.

  space.py         search space, the trial's HyperModel, ``Candidate`` (model + optimizer)
  oracles.py       keras-tuner's random / Bayesian / Hyperband oracles with a time budget
  records.py       execution records, trial table, best hyperparameters, HParams
  distributed.py   roles, the chief's oracle server, the worker's watch on the chief
  search.py        ``run_tuner``: one search, local, chief or worker
  tensorboard.py   trial runs ``trial-NN``, the per-epoch callback, HParams (ints as strings)

Writes, under its output directory:
  best_hyperparameters.json   {"model": trainer.model, "optimizer": trainer.optimizer} of the
                              best trial (ties: the earliest): what the Trainer trains
  trials.json, trials.csv     one row per trial: id, status, objective, hyperparameters,
                              which tuner ran it and for how long
  logs/                       TensorBoard: one run per trial (logs/trial-01, ...) with
                              train/validation sub-runs under the Trainer's tag names, and
                              the HParams dashboard's data (hyperparameters + objective)
  tuner/search/               keras-tuner's project (oracle state, trials, checkpoints)
  executions/                 one record per trial execution (who ran it, when, the result)
"""

from lstm_math.components.tuner.distributed import (LOST_CHIEF_EXIT, ROLES, ChiefWatch,  # noqa: F401
                                          LostChief, configure_role, role_from_env)
from lstm_math.components.tuner.oracles import (OBJECTIVE, BayesianOracle, HyperbandOracle,  # noqa: F401
                                      RandomOracle, make_oracle)
from lstm_math.components.tuner.records import (BEST_FILE, PROJECT, TRIALS_FILE,  # noqa: F401
                                                read_executions, read_results, trial_table,
                                                write_results)
from lstm_math.components.tuner.search import make_tuner, run_tuner  # noqa: F401
from lstm_math.components.tuner.space import (Candidate, Seq2SeqHyperModel,  # noqa: F401
                                              TrialSettings, declare, hyperparameter_kinds)
from lstm_math.components.tuner.tensorboard import (OBJECTIVE_TAG, TrialSummaries,  # noqa: F401
                                          trial_run_name)
