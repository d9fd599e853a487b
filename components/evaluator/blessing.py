"""Blessing: the absolute thresholds (overall and per operator slice) and no regression
against the pushed model (which one: ``lstm_math.components.baseline``)."""

from __future__ import annotations


# Exact match is a ratio of counts: a candidate exactly at the bar passes, whatever the
# rounding of (baseline - margin) in floating point.
_EPS = 1e-9


def bless(candidate: float, threshold: float, baseline: float | None, margin: float,
          per_operator: dict | None = None, operator_thresholds: dict | None = None,
          small_operands: dict | None = None, small_operands_threshold: float | None = None
          ) -> dict:
    """``per_operator``: metrics.json's table (tag -> {"exact_match", ...});
    ``operator_thresholds``: tag -> bar. A slice with a bar and no test equations fails.
    ``small_operands``: metrics.json's ``small_operands_all`` (every equation whose operands
    are all single-digit), judged against ``small_operands_threshold`` (None: no bar)."""
    reasons = []
    ok = True
    if candidate >= threshold - _EPS:
        reasons.append(f"exact match {candidate:.5f} meets the threshold {threshold}")
    else:
        ok = False
        reasons.append(f"exact match {candidate:.5f} is below the threshold {threshold}")
    for tag, bar in (operator_thresholds or {}).items():
        got = (per_operator or {}).get(tag, {}).get("exact_match")
        if got is None:
            ok = False
            reasons.append(f"{tag}: no test equations to judge against its threshold {bar}")
        elif got >= bar - _EPS:
            reasons.append(f"{tag}: exact match {got:.5f} meets its threshold {bar}")
        else:
            ok = False
            reasons.append(f"{tag}: exact match {got:.5f} is below its threshold {bar}")
    if small_operands_threshold is not None:
        if not small_operands:
            ok = False
            reasons.append(f"single-digit operands: no such equations to judge against the "
                           f"threshold {small_operands_threshold}")
        else:
            got, wrong = small_operands["exact_match"], small_operands["wrong"]
            meets = got >= small_operands_threshold - _EPS
            ok = ok and meets
            reasons.append(f"single-digit operands (all {small_operands['count']}): exact match "
                           f"{got:.5f} ({wrong} wrong) {'meets' if meets else 'is below'} "
                           f"the threshold {small_operands_threshold}")
    if baseline is None:
        reasons.append("no pushed model to compare with: judged on the threshold alone")
    elif candidate >= baseline - margin - _EPS:
        reasons.append(f"not worse than the pushed model ({baseline:.5f}) by more than {margin}")
    else:
        ok = False
        reasons.append(f"regression: {candidate:.5f} vs the pushed model's {baseline:.5f} "
                       f"(allowed margin {margin})")
    return {"blessed": ok, "reasons": reasons}
