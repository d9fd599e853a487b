"""Loading a config: a preset or YAML file (``base:`` inherits), ``--set key=value``
overrides with dotted keys, then typed building and validation.

``base:`` names a preset or a YAML file (a relative path is looked for first beside the
file that names it). Whatever is wrong fails as one ConfigError line naming the file or the
field: YAML that does not parse (the problem and its line and column, not PyYAML's
multi-line excerpt), a key given twice, a directory or a file that is not UTF-8 text, a
``base:`` that is not a name or that leads back to a file already read.

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

from lstm_math.config.fields import ConfigError, is_finite, show
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
    hexadecimal = text.lstrip("+-").startswith("0x")
    # No field holds more than 64 bits. A longer literal is refused before int() converts
    # it (thousands of digits are slow to convert and cannot even be printed in a message).
    significant = text.lstrip("+-")[2 if hexadecimal else 0:].lstrip("0")
    value = None
    if len(significant) <= (16 if hexadecimal else 20):
        value = int(text, 16 if hexadecimal else 10)
    if value is None or abs(value) >= 2**64:
        raise yaml.constructor.ConstructorError(
            None, None, f"integer {show(text, 24)} out of range (at most 64 bits)",
            node.start_mark)
    return value


def _mapping_without_duplicates(loader, node, deep=False):
    """A mapping in which a key appears once: a second ``trainer:`` section would silently
    replace the first. (Keys merged in with ``<<: *anchor`` may still be overridden.)"""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: construct_mapping says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _hex_or_decimal)
_Loader.construct_mapping = _mapping_without_duplicates


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
            raise ConfigError(f"{path}: expected an integer, got {show(value)}")
        if abs(value) >= 2**63:  # no field holds more than 64 bits
            raise ConfigError(f"{path}: {show(value)} is out of range (at most 2**63 - 1)")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {show(value)}")
        # NaN passes every comparison a check could make and inf is no setting of any
        # field: every float field is a finite number.
        if not is_finite(value) or (isinstance(value, int) and abs(value) >= 2**64):
            raise ConfigError(f"{path}: expected a finite number, got {show(value)}")
        return float(value)
    expected = next((text for kind, text in _PLAIN_TYPES if annotation is kind), None)
    if expected and not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {expected}, got {show(value)}")
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(f"{path}: a NUL character in {show(value)}")
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


def yaml_problem(e: Exception, lines: bool = True) -> str:
    """One line for a YAML error: the problem and where (PyYAML's own message spans several
    lines, with the offending text and a caret). ``lines``: name the line as well as the
    column (a file; an override's value is one line)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, yaml.reader.ReaderError):
        code = e.character if isinstance(e.character, int) else ord(e.character)
        if e.encoding != "unicode":  # a byte that does not decode
            return f"not {e.encoding} text: byte 0x{code:02x} at offset {e.position}"
        return f"unacceptable character #x{code:04x} at offset {e.position}: {e.reason}"
    if isinstance(e, yaml.MarkedYAMLError) and (e.problem or e.context):
        text = f"{e.context}: {e.problem}" if e.context and e.problem else (e.problem or e.context)
        mark = e.problem_mark or e.context_mark
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}" if lines else (
                f"column {mark.column + 1}")
            text = f"{text} at {where}"
        return " ".join(text.split())
    return " ".join(str(e).split()) or type(e).__name__


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set {show(text)}: expected key=value, e.g. trainer.epochs=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {show(text)}: empty key")
    multiline = "\n" in raw
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{key}: cannot parse value {show(raw)}: "
                          f"{yaml_problem(e, lines=multiline)}") from None
    return key, value


# A config file is a few kilobytes; anything past this is not one (``--config /dev/zero``).
MAX_CONFIG_BYTES = 1 << 20


def _find(name_or_path: str, referrer: str = "") -> str:
    """The file a ``--config`` or ``base:`` names: a path as given (a ``base:`` first beside
    the file that names it), else a preset (also when a directory of the preset's name is
    in the way)."""
    preset = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
    beside = os.path.join(os.path.dirname(referrer), name_or_path) if referrer else ""
    if beside and os.path.isfile(beside):
        return beside
    if os.path.exists(name_or_path) and not (os.path.isdir(name_or_path)
                                             and os.path.isfile(preset)):
        return name_or_path
    if os.path.exists(preset) and "/" not in name_or_path and os.sep not in name_or_path:
        return preset
    return ""


def _presets() -> str:
    return ", ".join(sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")))


def _load_yaml(name_or_path: str, chain: tuple = (), referrer: str = "") -> dict:
    """The mapping of a preset or file, its ``base:`` chain merged under it. ``chain``: the
    files that led here (a ``base:`` cycle is refused); ``referrer``: the file whose
    ``base:`` names this one ('' for ``--config``), which every error then names."""
    what = f"{referrer}: base {show(name_or_path)}" if referrer else (
        f"--config {show(name_or_path)}")
    if "\0" in name_or_path:
        raise ConfigError(f"{what}: a path cannot contain a NUL character")
    path = _find(name_or_path, referrer)
    if not path:
        raise ConfigError(f"{what}: no such file and no such preset; presets: {_presets()}")
    if os.path.isdir(path):
        raise ConfigError(f"{what}: a directory, not a YAML file")
    real = os.path.realpath(path)
    if real in chain:
        names = [os.path.basename(p) for p in chain + (real,)]
        raise ConfigError(f"{what}: a base cycle ({' -> '.join(names)})")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{what}: cannot read it: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES >> 20} MiB; not a config file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8: byte "
                          f"0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        data = yaml_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: a preset name or a YAML file path, got {show(base)}")
    return _deep_merge(_load_yaml(base, chain + (real,), path), data)


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
