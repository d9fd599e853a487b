"""What every config section is built from: ConfigError and ``require`` (an error names the
dotted field), the checks of plain numbers, and what of a section goes into a fingerprint
(``runtime_field``, ``fingerprint_value``, ``fingerprint_dict``). Imports nothing of the
project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def runtime_field(default):
    """A field that says how a step runs, not what it computes (a progress interval, a
    timeout): a node that reads it gets it, but it is left out of the node's fingerprint,
    so changing it reuses the cached artifact (``fingerprint_value``)."""
    return dataclasses.field(default=default, metadata={"fingerprint": False})


def fingerprinted(f: dataclasses.Field) -> bool:
    return f.metadata.get("fingerprint", True)


def fingerprint_value(value):
    """What of a config value goes into a fingerprint: a section as a mapping without its
    runtime fields (``runtime_field``), recursively; anything else as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: fingerprint_value(getattr(value, f.name))
                for f in dataclasses.fields(value) if fingerprinted(f)}
    return value


class ConfigError(ValueError):
    """A config value that is missing, of the wrong type or inconsistent; names the field."""


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field}: {message}")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fingerprint_dict(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
