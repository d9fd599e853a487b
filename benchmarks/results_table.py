"""The README's results table, generated from the Evaluator's metrics files (not typed).

    python benchmarks/results_table.py artifacts                   # latest run of a root
    python benchmarks/results_table.py post=runs/seed full=runs/full/runs/<run id>
    python benchmarks/results_table.py path/to/Evaluator/<fp>/metrics.json

Each argument is ``[LABEL=]PATH``: a pipeline root (its latest run with an Evaluator), a
run directory (``<root>/runs/<run id>``), an Evaluator output directory or its
``metrics.json``. From the run's manifest and config.yaml come the preset (the preset the
config equals, else the closest one and the fields that differ), the training examples
and the Trainer's wall time; the rest comes from metrics.json: the task (its coverage), the
hardware, exact match as uniform draws measure it, on every equation of the space (where
the Evaluator could run them all), with small operands (every operand < 10, < 100) and per
result length, how well ``confidence`` separates right from wrong answers (AUROC), and what
the served ``trusted`` does (confidence at or above the threshold t that keeps 99.9% of the
right answers of the test split): the share of wrong answers it catches and of right ones it
gives up, on the test split and over every equation. A model of several operators gets a
row per operator under its own row.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

OPERATOR_WORDS = {"+": "a + b", "-": "a - b", "*": "a * b", "/": "a / b"}
COLUMNS = ("task", "config", "training examples", "train wall time", "hardware",
           "exact match (uniform)", "exhaustive", "operands < 10", "operands < 100",
           "per result length (characters: exact match)", "confidence AUROC",
           "trusted, test split: wrong caught / right given up (t)",
           "trusted, every equation: wrong caught / right given up")
START, END = "<!-- results:start -->", "<!-- results:end -->"
LEGEND = ("exact match (uniform): the test split, each (operators, operand digit lengths) "
          "stratum weighted by its share of the space; exhaustive: every equation of the "
          "space (how many answers wrong); operands < 10: every equation whose operands are "
          "all single-digit (how many answers wrong; older reports: those of the test split or "
          "of every equation, with their count); operands < 100 (count): every operand below "
          "the bound; trusted: the served output, true where the answer's confidence is at or "
          "above t, the confidence that keeps 99.9% of the right answers of the test split "
          "(per operator); wrong caught: the share of wrong answers it does not trust; right "
          "given up: the share of right answers it does not trust either.")


# --------------------------------------------------------------------------------------
# Finding the files.


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def _runs_of_root(root: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "runs", "*", "manifest.json")), reverse=True)


def _component_dir(manifest_path: str, uri: str) -> str:
    """A component's directory: <root>/<Component>/<fingerprint>. Manifests hold the URI
    the run was given, relative to its working directory when the root was relative."""
    if os.path.isabs(uri) and os.path.isdir(uri):
        return uri
    root = os.path.dirname(os.path.dirname(os.path.dirname(manifest_path)))
    return os.path.join(root, *uri.rstrip("/").split("/")[-2:])


def locate(path: str) -> dict:
    """{metrics, manifest (or None), run_dir (or None)} for any accepted PATH."""
    path = os.path.abspath(path)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "manifest.json")):
        manifests = [os.path.join(path, "manifest.json")]
    elif os.path.isdir(path) and os.path.isdir(os.path.join(path, "runs")):
        manifests = _runs_of_root(path)
    else:
        manifests = None
    if manifests is not None:
        for m in manifests:
            manifest = _load(m)
            evaluator = manifest.get("components", {}).get("Evaluator")
            if not evaluator:
                continue
            metrics = os.path.join(_component_dir(m, evaluator["uri"]), "metrics.json")
            if os.path.exists(metrics):
                return {"metrics": metrics, "manifest": manifest, "run_dir": os.path.dirname(m)}
        raise FileNotFoundError(f"{path}: no run with an Evaluator's metrics.json")
    metrics = path if path.endswith(".json") else os.path.join(path, "metrics.json")
    if not os.path.exists(metrics):
        raise FileNotFoundError(f"{path}: no metrics.json")
    # an Evaluator directory: <root>/Evaluator/<fingerprint>/metrics.json
    eval_dir = os.path.dirname(metrics)
    root = os.path.dirname(os.path.dirname(eval_dir))
    for m in _runs_of_root(root):
        manifest = _load(m)
        uri = manifest.get("components", {}).get("Evaluator", {}).get("uri")
        candidate = _component_dir(m, uri) if uri else None
        if candidate and os.path.isdir(candidate) and os.path.samefile(candidate, eval_dir):
            return {"metrics": metrics, "manifest": manifest, "run_dir": os.path.dirname(m)}
    return {"metrics": metrics, "manifest": None, "run_dir": None}


# --------------------------------------------------------------------------------------
# Which preset a run's config is.


def _flatten(tree, prefix="") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("split_fractions", "search_space"):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


COMPARED = ("task", "trainer", "tuner", "evaluator")


def config_label(run_dir: str | None) -> str:
    """'default', or 'default + trainer.epochs=14' (at most 4 fields), or 'custom'."""
    if not run_dir or not os.path.exists(os.path.join(run_dir, "config.yaml")):
        return "unknown"
    import yaml

    from lstm_math.config import CONFIG_DIR, ConfigError, from_dict, load_config

    with open(os.path.join(run_dir, "config.yaml")) as f:
        raw = yaml.safe_load(f)
    try:
        run = from_dict(raw).to_dict()  # fills fields newer than the run with their defaults
        filled = True
    except (ConfigError, TypeError):  # an older schema (a renamed field): compare as written
        run, filled = raw, False
    run = _flatten({k: run.get(k, {}) for k in COMPARED})
    best = None
    for name in sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")):
        preset = load_config(name).to_dict()
        preset = _flatten({k: preset.get(k, {}) for k in COMPARED})
        # unfilled, a field the run's config does not have is newer than the run: skip it
        keys = set(run) | set(preset) if filled else set(run)
        diff = sorted(k for k in keys if run.get(k) != preset.get(k))
        if best is None or len(diff) < len(best[1]):
            best = (name, diff)
    name, diff = best
    if not diff:
        return name
    if len(diff) > 4:
        return f"custom (closest: {name}, {len(diff)} fields differ)"
    return name + " + " + ", ".join(f"{k}={json.dumps(_portable(run.get(k)))}" for k in diff)


def _portable(value):
    """A path on the machine that ran (``trainer.warm_start``) as its last two parts, the
    artifact it names (``.../Trainer/<fingerprint>``): the rest says nothing to a reader."""
    if isinstance(value, str) and os.path.isabs(value) and value.count("/") > 2:
        return ".../" + "/".join(value.rstrip("/").split("/")[-2:])
    return value


# --------------------------------------------------------------------------------------
# The figures.


def _em(value, digits: int = 5) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _exhaustive(table: dict | None) -> str:
    """'0.99999 (12 wrong)': five decimals alone would print 2 wrong of 10^6 as 1.00000."""
    if not table:
        return "-"
    return f"{_em(table['exact_match'])} ({table['wrong']:,} wrong)"


def _cell(table: dict | None, key: str) -> str:
    if not table or key not in table:
        return "-"
    v = table[key]
    return f"{_em(v['exact_match'])} ({v['count']})"


def _single_digit(metrics: dict, op: str | None) -> str | None:
    """The Evaluator's every-single-digit-equation figure (of one operator), if it has one."""
    small = metrics.get("small_operands_all")
    if small and op is not None:
        small = small.get("per_operator", {}).get(op)
    return _exhaustive(small) if small else None


def task_of(coverage: dict) -> str:
    ops = coverage.get("operators", [])
    n = int(coverage.get("num_operands", 2))
    fewest = int(coverage.get("min_operands", n))
    span = f"{coverage.get('operand_min')}..{coverage.get('operand_max')}"
    if len(ops) == 1 and n == 2:
        return f"{OPERATOR_WORDS[ops[0]]}, {span}"
    counts = f"{n}" if fewest == n else f"{fewest}-{n}"
    return f"{' '.join(ops)}, {counts} operands, {span}"


def _small_from_digits(rows: dict) -> dict:
    """'<10' and '<100' cells from an operand-length table (operands are >= 0)."""
    out = {}
    for label, most in (("<10", 1), ("<100", 2)):
        keys = [k for k in rows if all(int(d) <= most for d in k.split("x"))]
        count = sum(rows[k]["count"] for k in keys)
        if count:
            wrong = sum(rows[k]["wrong"] for k in keys)
            out[label] = {"exact_match": 1 - wrong / count, "count": count, "wrong": wrong}
    return out


def _lengths(table: dict) -> str:
    return " ".join(f"{k}: {_em(v['exact_match'], 4)}" for k, v in table.items()) or "-"


def _auroc(q: dict | None) -> str:
    if not q:
        return "-"
    if q.get("auroc") is not None:
        return f"{q['auroc']:.4f}"
    return "n/a (no wrong answers)" if q.get("right") else "n/a (no right answers)"


def _trusted(cell: dict | None, threshold: float | None = None) -> str:
    """'83.3% / 0.05% (0.9836)': wrong answers caught / right answers given up (t)."""
    if not cell:
        return "-"
    caught = "-" if cell.get("wrong_caught") is None else f"{cell['wrong_caught']:.1%}"
    given_up = ("-" if cell.get("right_given_up") is None
                else f"{cell['right_given_up']:.2%}")
    shown = f"{caught} / {given_up}"
    return shown + (f" ({threshold:.4g})" if threshold is not None else "")


def _trust_cells(metrics: dict, key: str) -> tuple[str, str]:
    """The two trusted cells of an operator (or 'overall'). Reports written before the
    Evaluator's ``trust`` table: the test split's from its confidence figures (the same
    comparison: wrong answers below t are caught, right ones below t given up)."""
    q = metrics.get("confidence", {}).get(key) or {}
    test = (metrics.get("trust") or {}).get(key)
    if test is None and q:
        test = {"wrong_caught": q.get("wrong_below_threshold"),
                "right_given_up": q.get("right_below_threshold")}
    every = ((metrics.get("exhaustive") or {}).get("trust") or {}).get(key)
    # the overall row of several operators has no one t: each answer meets its operator's
    shown = q.get("threshold") if key != "overall" or len(metrics.get("per_operator", {})) < 2 \
        else None
    return _trusted(test, shown), _trusted(every)


def train_time_cell(trainer: dict) -> str:
    """The Trainer's time and epochs; a resumed training's time counts every leg's epochs."""
    if trainer.get("train_seconds") is None:
        return "-"
    cell = f"{trainer['train_seconds'] / 60:.1f} min"
    epochs, resumed = trainer.get("epochs_run"), trainer.get("resumed_after_epoch")
    if not epochs:
        return cell
    if resumed:
        return f"{cell} ({epochs} epochs, resumed after epoch {resumed})"
    return f"{cell} ({epochs} epochs)"


def rows_for(label: str | None, path: str) -> list[list[str]]:
    where = locate(path)
    metrics = _load(where["metrics"])
    manifest = where["manifest"] or {}
    comps = manifest.get("components", {})
    coverage = metrics.get("coverage") or comps.get("ExampleGen", {}).get(
        "properties", {}).get("coverage", {})
    counts = comps.get("ExampleGen", {}).get("properties", {}).get("counts", {})
    trainer = comps.get("Trainer", {}).get("properties", {})
    wall = train_time_cell(trainer)
    config = config_label(where["run_dir"])
    if label:
        config = f"{label}: {config}" if config not in (label, "unknown") else label
    exhaustive = metrics.get("exhaustive")
    full = exhaustive or metrics  # small operands, lengths: every equation when we have them
    uniform = metrics.get("uniform") or {}
    auroc = _auroc(metrics.get("confidence", {}).get("overall"))
    trusted_test, trusted_every = _trust_cells(metrics, "overall")
    rows = [[task_of(coverage), config, f"{counts['train']:,}" if "train" in counts else "-",
             wall, metrics.get("hardware", "-"),
             _em(uniform.get("exact_match", metrics.get("exact_match"))),
             _exhaustive(exhaustive),
             _single_digit(metrics, None) or _cell(full.get("small_operands"), "<10"),
             _cell(full.get("small_operands"), "<100"),
             _lengths(full.get("per_result_length", {})), auroc, trusted_test, trusted_every]]
    operators = metrics.get("per_operator", {})
    if len(operators) > 1:
        for op in operators:
            digits = full.get("per_operator_operand_digits", {}).get(op, {})
            small = _small_from_digits(digits)
            ex_op = (exhaustive or {}).get("per_operator", {}).get(op)
            auroc = _auroc(metrics.get("confidence", {}).get(op))
            trusted_test, trusted_every = _trust_cells(metrics, op)
            rows.append([f"&nbsp;&nbsp;{OPERATOR_WORDS.get(op, op)}", "", "", "", "",
                         _em(uniform.get("per_operator", {}).get(
                             op, operators[op]["exact_match"])),
                         _exhaustive(ex_op),
                         _single_digit(metrics, op) or _cell(small, "<10"),
                         _cell(small, "<100"), "", auroc,
                         trusted_test, trusted_every])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]PATH")
    parser.add_argument("--write", metavar="FILE",
                        help=f"replace the lines between {START} and {END} in FILE "
                             "(the README) instead of printing")
    args = parser.parse_args(argv)
    rows = []
    for spec in args.runs:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        rows += rows_for(label or None, path)
    from scripts.readme_figures import print_or_write
    return print_or_write(args.write, START, END, markdown(rows) + "\n\n" + LEGEND,
                          f"{args.write}: results table of {len(args.runs)} run(s)")


if __name__ == "__main__":
    raise SystemExit(main())
