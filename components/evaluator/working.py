"""Where wrong answers went wrong: the first wrong step of the working, per operator.

For a model that writes its working (components.answer_formats), every answer is compared
with the true working of its equation step by step; a wrong answer is counted under the
first step that differs (e.g. running_sums' ``column 2: + a1*b1``: the digit-pair product or
the running sum of column 2 went wrong there, everything before it was right).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from lstm_math.components import answer_formats
from lstm_math.components import equations as eq

if TYPE_CHECKING:
    from lstm_math.config import Coverage


def coarse_step(step: str) -> str:
    """A step name without its detail: the reduction it belongs to ('value 2, worked' for
    'value 2, worked: column 1: + a0*b1'), or the name itself when it has none."""
    return step.split(":", 1)[0]


def working_errors(texts, tags, answers, truths, valid, workings, coverage: Coverage) -> dict:
    """{operator tag: {"count", "wrong", "working_right_answer_wrong",
    "right_answer_wrong_working", "first_wrong_step": {step name: wrong answers}}} for each
    tag of the coverage whose format has a working; for equations of three or more operands
    also "per_pattern": {operator pattern ('a + b * c'): {"count", "wrong",
    "first_wrong_step": {coarse step ('value 2'): wrong answers}}}, so that which reduction
    of which pattern goes wrong reads at a glance."""
    formats = answer_formats.formats_of(coverage)
    high = coverage.operand_max
    out = {}
    for tag, fmt in formats.items():
        steps = collections.Counter()
        patterns = collections.defaultdict(lambda: {"count": 0, "wrong": 0,
                                                    "first_wrong_step": collections.Counter()})
        count = wrong = lucky = unlucky = 0
        for text, row_tag, answer, truth, ok_row, shown in zip(texts, tags, answers, truths,
                                                               valid, workings):
            if row_tag != tag or not ok_row:
                continue
            count += 1
            equation = eq.parse(text)
            truth_working, spans = answer_formats.working_and_steps(
                fmt, equation.operands, equation.operators, high)
            predicted = answer_formats.raw_working(fmt, shown)
            step = answer_formats.first_wrong_step(fmt, truth_working, predicted, high, spans)
            pattern = (patterns[eq.operator_pattern(equation.operators)]
                       if len(equation.operators) >= 2 else None)
            if pattern is not None:
                pattern["count"] += 1
            if answer != truth:
                wrong += 1
                if step is None:
                    unlucky += 1
                else:
                    steps[step] += 1
                if pattern is not None:
                    pattern["wrong"] += 1
                    pattern["first_wrong_step"][
                        "the answer alone" if step is None else coarse_step(step)] += 1
            elif step is not None:
                lucky += 1
        order = [name for _, _, name in answer_formats.step_spans(fmt, "", high)] \
            if fmt in ("column_carry", "running_sums") else []
        ranked = sorted(steps, key=lambda s: (order.index(s) if s in order else len(order), s))
        out[tag] = {"format": fmt, "count": count, "wrong": wrong,
                    "working_right_answer_wrong": unlucky,
                    "right_answer_wrong_working": lucky,
                    "first_wrong_step": {name: steps[name] for name in ranked}}
        if patterns:
            out[tag]["per_pattern"] = {
                name: {"count": p["count"], "wrong": p["wrong"],
                       "first_wrong_step": dict(sorted(p["first_wrong_step"].items()))}
                for name, p in sorted(patterns.items())}
    return out
