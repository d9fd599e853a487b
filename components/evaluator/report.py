"""The report: metrics.json's figures as Markdown tables, for people and TensorBoard."""

from __future__ import annotations


def _em(value) -> str:
    return "n/a" if value is None else f"{value:.5f}"


def _table(title: str, rows: dict, key_name: str) -> list[str]:
    lines = [f"**{title}**", ""]
    if not rows:
        return lines + ["none", ""]
    lines += [f"| {key_name} | exact match | count | wrong |", "|---|---|---|---|"]
    for key, v in rows.items():
        lines.append(f"| {key} | {_em(v['exact_match'])} | {v['count']} | {v['wrong']} |")
    return lines + [""]


def pattern_table(m: dict) -> list[str]:
    """Per operator pattern of three or more operands ('a + b * c'), with the uniform
    estimate beside the split's own exact match where the report has one."""
    rows = m.get("per_pattern") or {}
    if not rows:
        return []
    uniform = (m.get("uniform") or {}).get("per_pattern") or {}
    lines = ["**per operator pattern (three or more operands)**", "",
             "| pattern | exact match | uniform | count | wrong |", "|---|---|---|---|---|"]
    for key, v in rows.items():
        lines.append(f"| `{key}` | {_em(v['exact_match'])} | {_em(uniform.get(key))} | "
                     f"{v['count']} | {v['wrong']} |")
    return lines + [""]


def _fmt(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def confidence_table(quality: dict) -> list[str]:
    """AUROC and the client threshold per operator (see scoring.confidence_quality)."""
    if not quality:
        return []
    keep = next(iter(quality.values()))["keep_right"]
    lines = [f"**confidence** (does it separate right from wrong answers? threshold: the "
             f"highest confidence that keeps {keep:.1%} of the right answers)", "",
             "| operator | right | wrong | AUROC | threshold | wrong answers below it |",
             "|---|---|---|---|---|---|"]
    for name, q in quality.items():
        lines.append(f"| {name} | {q['right']} | {q['wrong']} | {_fmt(q['auroc'])} | "
                     f"{_fmt(q['threshold'], '.6g')} | {_fmt(q['wrong_below_threshold'], '.1%')} |")
    return lines + [""]


def trust_table(trust: dict) -> list[str]:
    """What the served ``trusted`` does, per operator (see scoring.trust_cell)."""
    if not trust:
        return []
    lines = ["**trusted** (the served output: confidence at or above the operator's "
             "threshold from the test split)", "",
             "| operator | threshold | wrong answers caught (not trusted) | right answers "
             "given up | wrong but trusted |", "|---|---|---|---|---|"]
    for name, c in trust.items():
        lines.append(f"| {name} | {_fmt(c['threshold'], '.6g')} | "
                     f"{_fmt(c['wrong_caught'], '.1%')} of {c['wrong']} | "
                     f"{_fmt(c['right_given_up'], '.3%')} of {c['right']} | "
                     f"{c['wrong_trusted']} |")
    return lines + [""]


def small_operands_section(small: dict | None) -> list[str]:
    """Every equation of single-digit operands, evaluated whole."""
    if not small:
        return []
    lines = [f"### Every equation whose operands are all below {small['bound']}", "",
             f"exact match **{small['exact_match']:.5f}** on {small['count']} equations "
             f"({small['wrong']} wrong)"
             + "".join(f"; `{e['equation']}` = `{e['answer']}` "
                       f"(confidence {e['confidence']:.3f}"
                       f"{', trusted' if e.get('trusted') else ''})"
                       for e in small["worst_errors"]), ""]
    lines += _table("per operator", small["per_operator"], "operator")
    if small.get("per_pattern"):  # reports written before the slice had patterns have none
        lines += _table("per operator pattern (three or more operands)",
                        small["per_pattern"], "pattern")
    return lines


def section(name: str, m: dict) -> list[str]:
    lines = [f"### {name}", "",
             f"exact match **{m['exact_match']:.5f}** on {m['count']} equations "
             f"({m['wrong']} wrong; {m['one_wrong_digit']} of them one wrong digit)", ""]
    if m.get("uniform"):
        u = m["uniform"]
        lines += [f"as uniform draws over the operand space would measure it: **"
                  f"{_em(u['exact_match'])}** ({u['method']}; per operator: "
                  + ", ".join(f"{k} {_em(v)}" for k, v in u["per_operator"].items()) + ")", ""]
    lines += _table("per operator ('mixed': three or more operands)", m["per_operator"],
                    "operator")
    if len(m.get("per_operand_count", {})) > 1:
        lines += _table("per operand count", m["per_operand_count"], "operands")
    lines += _table("per operand length (digits of each operand)", m["per_operand_digits"],
                    "digits")
    per_op = m.get("per_operator_operand_digits", {})
    if len(per_op) > 1:
        for op, rows in per_op.items():
            lines += _table(f"per operand length, {op}", rows, "digits")
    lines += pattern_table(m)
    lines += _table("per result length", m["per_result_length"], "characters")
    lines += _table("small operands (every operand below the bound)",
                    m.get("small_operands", {}), "operands")
    if "seen_vs_unseen" in m:
        lines += _table("seen in training vs never seen", m["seen_vs_unseen"], "equations")
    lines += confidence_table(m.get("confidence", {}))
    lines += trust_table(m.get("trust", {}))
    lines += ["**error sizes** (|answer - truth| of the wrong answers)", "",
              "| size | wrong answers |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in m["error_sizes"].items()] + [""]
    lines += ["**worst errors**", ""]
    if not m["worst_errors"]:
        lines += ["none", ""]
    else:
        lines += ["| equation | answer | truth | size | confidence |", "|---|---|---|---|---|"]
        for e in m["worst_errors"]:
            lines.append(f"| `{e['equation']}` | `{e['answer']}` | `{e['truth']}` | "
                         f"{e['error_size'] if e['error_size'] is not None else '-'} | "
                         f"{e['confidence']:.3f} |")
    return lines + [""]


def working_errors_section(metrics: dict) -> list[str]:
    """Where wrong answers went wrong: per operator tag with a working, the first wrong step,
    and for three or more operands the first wrong reduction per operator pattern."""
    lines = []
    for tag, w in (metrics.get("working_errors") or {}).items():
        lines += [f"**where wrong answers went wrong, {tag}** ({w['format']}, "
                  f"{metrics.get('working_errors_on', '')}): the first wrong step of the "
                  f"working; {w['wrong']} wrong answers of {w['count']}, "
                  f"{w['working_right_answer_wrong']} with a right working, "
                  f"{w['right_answer_wrong_working']} right answers from a wrong working", "",
                  "| first wrong step | wrong answers |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in w["first_wrong_step"].items()] + [""]
        if w.get("per_pattern"):  # reports written before the per-pattern table have none
            lines += [f"**where wrong answers went wrong per pattern, {tag}**: the first "
                      f"wrong reduction", "",
                      "| pattern | wrong of | first wrong step |", "|---|---|---|"]
            lines += [f"| {name} | {p['wrong']} of {p['count']} | "
                      + (", ".join(f"{k}: {v}" for k, v in p["first_wrong_step"].items())
                         or "-") + " |" for name, p in w["per_pattern"].items()] + [""]
    return lines


def report_markdown(metrics: dict) -> str:
    lines = ["## Evaluation", ""]
    lines += section("Test split", metrics)
    if metrics.get("exhaustive"):
        lines += section("Exhaustive: every equation of the operand space",
                         metrics["exhaustive"])
    elif metrics.get("exhaustive_skipped"):
        lines += [f"Exhaustive mode skipped: {metrics['exhaustive_skipped']}", ""]
    lines += working_errors_section(metrics)
    lines += small_operands_section(metrics.get("small_operands_all"))
    if metrics.get("baseline"):
        b = metrics["baseline"]
        lines += [f"Pushed model (version {b['version']}): exact match "
                  f"{b['exact_match']:.5f} on the same test split", ""]
    return "\n".join(lines)
