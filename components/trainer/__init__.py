"""Trainer: tf.data from the shards into a Keras seq2seq model under a tf.distribute strategy.

  strategy.py      which strategy (one device, MirroredStrategy, MultiWorker from TF_CONFIG)
                   and which worker writes
  model.py         model assembly used by the Trainer, the Tuner, benchmarks and the
                   Exporter: coverage, optimizer (trainer.optimizer), compile, load_trained
  loop.py          the custom training loop (``strategy.run`` per step, any strategy)
  checkpoints.py   every weight and optimizer slot per epoch, resume and early-stopping state
  summaries.py     TensorBoard scalars, graph and sample predictions
  run.py           ``run_trainer``: one run, resumable (what it writes is listed there)
"""

from lstm_math.components.trainer.checkpoints import (CHECKPOINT_PREFIX,  # noqa: F401
                                            checkpointed_variables, is_better_epoch,
                                            restore_epoch_weights)
from lstm_math.components.trainer.loop import TrainLoop, steps_for  # noqa: F401
from lstm_math.components.trainer.model import (build_optimizer, compile_model,  # noqa: F401
                                      learning_rate_schedule, load_trained, model_coverage,
                                      seed_weights)
from lstm_math.components.trainer.run import run_trainer  # noqa: F401
from lstm_math.components.trainer.strategy import choose_strategy, is_chief, strategy_name  # noqa: F401
