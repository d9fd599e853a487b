"""Nested dataclass configs (task / trainer / tuner / evaluator / exporter / pusher / runtime).

Why a top-level package (``lstm_math.config``, the repository's ``config/``): the config
is what the components are given and what the pipeline hands them, so it must sit below
both. Under ``pipeline/`` a component reading its section would import the orchestration's
package; here it is a leaf that imports nothing of the project but other leaves (the task's
arithmetic, ``lstm_math.components.equations`` and ``.sampling``, and the serving contract's
model name), and ``tests/test_import_rules.py`` keeps it so.

A config comes from a named preset (``pipeline/configs/<name>.yaml``) or a YAML file, then
``--set key=value`` overrides with dotted keys (``trainer.epochs=3``). Every field is type
checked and every section validates itself; a bad config fails fast with a ConfigError
naming the dotted field.

  schema.py    PipelineConfig and the task / evaluator / exporter / pusher / runtime
               sections (dataclasses with their checks)
  training.py  the trainer and tuner sections (model, optimizer, loop, search space)
  cluster.py   the cluster section (how a step runs on several processes or pods)
  fields.py    ConfigError, require, fingerprint_value (what of a section a fingerprint
               holds: not its runtime fields), fingerprint_dict
  coverage.py  Coverage: what a model covers (its equation space, lengths, answer layout)
  loading.py   presets, YAML files with ``base:``, overrides, typed building
"""

from lstm_math.config.coverage import (FAMILY_OUTPUT_FORMAT, MODEL_FAMILIES,  # noqa: F401
                                      Coverage, coverage_of, output_format_of)
from lstm_math.config.loading import (CONFIG_DIR, RENAMED, config_from_args,  # noqa: F401
                                      from_dict, load_config, parse_override, yaml_load)
from lstm_math.config.fields import (ConfigError, fingerprint_dict,  # noqa: F401
                                     fingerprint_value, runtime_field)
from lstm_math.config.schema import (DataConfig, EvaluatorConfig, ExporterConfig,  # noqa: F401
                                     PipelineConfig, PusherConfig, RuntimeConfig, TaskConfig,
                                     validate)
from lstm_math.config.training import (MAIN_STAGE_FILE, MODEL_FILE,  # noqa: F401
                                       FinishConfig, ModelHParams, OptimizerConfig,
                                       TrainerConfig, TunerConfig, searchable_fields,
                                       warm_start_file)
