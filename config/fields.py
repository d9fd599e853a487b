"""What every config section is built from: ConfigError and ``require`` (an error names the
dotted field), the checks of plain numbers, and what of a section goes into a fingerprint
(``runtime_field``, ``fingerprint_value``, ``fingerprint_dict``). Imports nothing of the
project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any


def runtime_field(default):
    """A field that says how a step runs, not what it computes (a progress interval, a
    timeout): a node that reads it gets it, but it is left out of the node's fingerprint,
    so changing it reuses the cached artifact (``fingerprint_value``)."""
    return dataclasses.field(default=default, metadata={"fingerprint": False})


def fingerprinted(f: dataclasses.Field, owner=None) -> bool:
    """Whether field ``f`` of the section ``owner`` goes into a fingerprint: not a runtime
    field; a field whose metadata ``fingerprint`` is a function of its section only where
    that says so (a field added later, left out while it does nothing, so that what was
    cached before it keeps its key)."""
    mark = f.metadata.get("fingerprint", True)
    if callable(mark):
        return bool(mark(owner))
    return bool(mark)


def fingerprint_value(value):
    """What of a config value goes into a fingerprint: a section as a mapping without its
    runtime fields (``runtime_field``) and the fields it leaves out while they do nothing,
    recursively; anything else as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: fingerprint_value(getattr(value, f.name))
                for f in dataclasses.fields(value) if fingerprinted(f, value)}
    return value


class ConfigError(ValueError):
    """A config value that is missing, of the wrong type or inconsistent; names the field.

    Always one line (the CLI prints it as ``bad config: <message>``): a line break that
    reaches it from a value or a file name is written as ``\\n``."""

    def __init__(self, message="", *args):
        if isinstance(message, str):
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(message, *args)


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field}: {message}")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_finite(v) -> bool:
    """A number that is neither NaN nor infinite."""
    return is_number(v) and (is_int(v) or math.isfinite(v))


def show(value, limit: int = 60) -> str:
    """A value as a message shows it: its repr, cut to ``limit`` characters, so that a long
    list or string keeps the message on one short line and an integer of thousands of
    digits (which Python refuses to print) is described instead of printed."""
    if is_int(value) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a huge integer inside a list or mapping
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fingerprint_dict(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
