"""Loading a config: a preset or YAML file (``base:`` inherits), ``--set key=value``
overrides with dotted keys, then typed building and validation.

A field moved by a rename is refused with a message that names the new key
(``trainer.model.learning_rate`` -> ``trainer.optimizer.learning_rate``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from typing import Any

import yaml

from lstm_math.config.fields import ConfigError
from lstm_math.config.schema import PipelineConfig

# The presets ship with the CLI as package data of lstm_math.pipeline (pipeline/configs/):
# found by path, beside this package in the checkout and in site-packages alike.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "pipeline", "configs")


class _Loader(yaml.SafeLoader):
    """YAML with numbers read as people write them.

    PyYAML follows YAML 1.1: ``3e-3`` and ``1e3`` (no dot, or no exponent sign) are strings,
    ``010`` is octal 8 and ``1:30`` is sexagesimal 90. Here a number is a decimal integer
    (``1_000`` allowed), a hexadecimal one (``0x1f``) or a decimal float with an optional
    exponent (``3e-3``, ``1.5E+3``, ``.5``, ``.inf``); anything else that looks numeric
    (``010``, ``1:30``) stays a string, which a numeric field then refuses naming itself.
    """


_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT = re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                          |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                          |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                          |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _hex_or_decimal(loader, node):
    text = loader.construct_scalar(node).replace("_", "")
    return int(text, 16) if text.lstrip("+-").startswith("0x") else int(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _hex_or_decimal)


def yaml_load(text_or_stream):
    """``yaml.safe_load`` with numbers as people write them (see _Loader)."""
    return yaml.load(text_or_stream, Loader=_Loader)


# Keys that moved (old dotted key -> new dotted key).
RENAMED = {
    "trainer.model.learning_rate": "trainer.optimizer.learning_rate",
    "trainer.lr_schedule": "trainer.optimizer.schedule",
}


# The field types checked by isinstance alone, as a message names them.
_PLAIN_TYPES = ((bool, "true or false"), (str, "a string"), (list, "a list"), (dict, "a mapping"))


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        if args in ([float], [int]):
            return _check_type(path, value, args[0])
        return value
    if annotation is int or origin is int:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # 1e6 examples
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    expected = next((text for kind, text in _PLAIN_TYPES if annotation is kind), None)
    if expected and not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {expected}, got {value!r}")
    return value


def build(cls, data: dict, path: str = ""):
    """A dataclass from a (nested) mapping, every value type checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        field_path = f"{path}.{key}" if path else key
        if key not in fields:
            if field_path in RENAMED:
                raise ConfigError(f"{field_path}: renamed to {RENAMED[field_path]}")
            raise ConfigError(
                f"{field_path}: unknown field; known fields: {', '.join(sorted(fields))}"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build(hint, value, field_path)
        else:
            kwargs[key] = _check_type(field_path, value, hint)
    return cls(**kwargs)


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in (
            "split_fractions",
            "search_space",
        ):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. trainer.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {e}") from e
    return key, value


def _load_yaml(name_or_path: str) -> dict:
    if os.path.exists(name_or_path):
        path = name_or_path
    else:
        path = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
        if not os.path.exists(path):
            presets = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
            raise ConfigError(
                f"--config {name_or_path!r}: no such file and no such preset; "
                f"presets: {', '.join(presets)}"
            )
    with open(path) as f:
        try:
            data = yaml_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base:
        data = _deep_merge(_load_yaml(base), data)
    return data


def load_config(name_or_path: str = "default", overrides: list[str] | None = None) -> PipelineConfig:
    data = _load_yaml(name_or_path)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    return from_dict(data)


def from_dict(data: dict) -> PipelineConfig:
    config = build(PipelineConfig, data, "")
    config.validate()
    return config


def config_from_args(args):
    """The config a command line asks for: ``--config``, ``--set`` overrides, then
    ``--pipeline-root`` / ``--serving-base`` and Beam options (``args.beam_args``) on top.
    Shared by every ``lstm-math`` command that takes a config."""
    overrides = list(args.overrides)
    if getattr(args, "pipeline_root", None):
        overrides.append(f"runtime.pipeline_root={args.pipeline_root}")
    if getattr(args, "serving_base", None):
        overrides.append(f"pusher.serving_base={args.serving_base}")
    config = load_config(args.config, overrides)
    beam_args = list(getattr(args, "beam_args", []) or [])
    if beam_args:
        config = dataclasses.replace(config, runtime=dataclasses.replace(
            config.runtime, beam_args=list(config.runtime.beam_args) + beam_args))
    return config
