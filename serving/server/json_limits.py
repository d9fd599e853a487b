"""Cheap refusal of a REST predict body before ``json.loads`` builds it.

``json.loads`` of 3 MB of ``[[],[],...]`` (10^6 empty lists) holds the GIL for about 0.2 s
(and freeing them takes more), so a client looping on such bodies would stall both event
loops long before the row limit is checked. :func:`precheck_predict_json` answers from byte
counts instead, at C speed, and only refuses a body that cannot be a valid predict request
within the row limit:

* a string is delimited by two unescaped quotes, so ``(quotes - backslash-quotes) / 2`` is a
  lower bound on the strings in the body; a valid request of ``max_rows`` rows holds at most
  ``3 * max_rows + 3`` strings (``{"equation": {"b64": "..."}}`` per row, plus the top-level
  keys and ``signature_name``);
* commas outside strings separate values: a valid request holds at most ``max_rows + 2``
  of them (between rows, between top-level keys); a body with no more commas than that
  cannot hold many values at all (nesting depth is bounded by json's recursion limit).

What passes holds at most a few values per allowed row, so parsing it costs about what a
valid request at the row limit costs.
"""

from __future__ import annotations

import re
from typing import Optional

from lstm_math.serving.server.errors import InvalidArgument

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
STRINGS_PER_ROW = 3  # {"equation": {"b64": "..."}}: two keys and the value
EXTRA_STRINGS = 3  # "instances" / "inputs", "signature_name" and its value


def _too_many(max_rows: int) -> InvalidArgument:
    return InvalidArgument(f"The request has more than {max_rows} rows; the limit is "
                           f"{max_rows} rows per request (split it, or raise "
                           f"--max-request-rows)")


def precheck_predict_json(raw: bytes, max_rows: Optional[int]) -> None:
    """InvalidArgument when ``raw`` certainly holds more values than a predict request of
    ``max_rows`` rows can; otherwise nothing (then ``json.loads`` is bounded in cost)."""
    if max_rows is None:
        return
    commas = raw.count(b",")
    if commas <= max_rows + 2:
        # few commas: few values (strings need commas to be many; nesting depth is
        # bounded by json's recursion limit)
        return
    has_escapes = b"\\" in raw
    quotes = raw.count(b'"')
    strings_at_least = (quotes - (raw.count(b'\\"') if has_escapes else 0)) // 2
    if strings_at_least > STRINGS_PER_ROW * max_rows + EXTRA_STRINGS:
        raise _too_many(max_rows)
    # Many commas but few strings: count the commas outside strings.
    if not quotes:
        structural = commas
    elif has_escapes:
        structural = _STRING.sub(b'""', raw).count(b",")
    else:  # no escapes: every other piece between quotes is outside a string
        structural = sum(piece.count(b",") for piece in raw.split(b'"')[::2])
    if structural > max_rows + 2:
        raise _too_many(max_rows)
