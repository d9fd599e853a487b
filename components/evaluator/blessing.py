"""Blessing: the absolute threshold and no regression against the pushed model."""

from __future__ import annotations

import os

from serving import contract


def latest_pushed(serving_base: str, model_name: str) -> tuple[int, str] | None:
    base = os.path.join(serving_base, model_name)
    version = contract.latest_version(base)
    return None if version is None else (version, os.path.join(base, str(version)))


# Exact match is a ratio of counts: a candidate exactly at the bar passes, whatever the
# rounding of (baseline - margin) in floating point.
_EPS = 1e-9


def bless(candidate: float, threshold: float, baseline: float | None, margin: float) -> dict:
    reasons = []
    ok = True
    if candidate >= threshold - _EPS:
        reasons.append(f"exact match {candidate:.5f} meets the threshold {threshold}")
    else:
        ok = False
        reasons.append(f"exact match {candidate:.5f} is below the threshold {threshold}")
    if baseline is None:
        reasons.append("no pushed model to compare with: judged on the threshold alone")
    elif candidate >= baseline - margin - _EPS:
        reasons.append(f"not worse than the pushed model ({baseline:.5f}) by more than {margin}")
    else:
        ok = False
        reasons.append(f"regression: {candidate:.5f} vs the pushed model's {baseline:.5f} "
                       f"(allowed margin {margin})")
    return {"blessed": ok, "reasons": reasons}
