"""Nested dataclass configs (task / trainer / tuner / evaluator / exporter / pusher / runtime).

A config comes from a named preset (``pipeline/configs/<name>.yaml``) or a YAML file, then
``--set key=value`` overrides with dotted keys (``trainer.epochs=3``). Every field is type
checked and every section validates itself; a bad config fails fast with a ConfigError
naming the dotted field.

  schema.py    the sections (dataclasses with their checks), coverage_of, fingerprint_dict
  loading.py   presets, YAML files with ``base:``, overrides, typed building
"""

from lstm_math.pipeline.config.loading import (CONFIG_DIR, RENAMED, config_from_args,  # noqa: F401
                                     from_dict, load_config, parse_override)
from lstm_math.pipeline.config.schema import (MODEL_FAMILIES, ConfigError, DataConfig,  # noqa: F401
                                    EvaluatorConfig, ExporterConfig, ModelHParams,
                                    OptimizerConfig, PipelineConfig, PusherConfig,
                                    RuntimeConfig, TaskConfig, TrainerConfig, TunerConfig,
                                    coverage_of, fingerprint_dict, output_format_of,
                                    searchable_fields, validate)
