"""Pictures: the post's error map per operator and the error-size histogram (PNG bytes)."""

from __future__ import annotations

import collections
import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lstm_math.config import Coverage


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # "tight": the legend sits outside the axes (right of the map) and must not be cut off
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def error_map_pngs(rows: dict, coverage: Coverage, title: str) -> dict:
    """{operator: PNG bytes}: the (a, b) plane of each operator, from the two-operand rows
    (a model of 2..3 operands gets a map per operator from its two-operand equations)."""
    if coverage.min_operands > 2:
        return {}
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    low, high = coverage.operand_min, coverage.operand_max
    width = high - low + 1
    by_op = collections.defaultdict(lambda: ([], [], []))
    for text, answer, truth, ok in zip(rows["texts"], rows["answers"], rows["truths"],
                                       rows["valid"]):
        parts = text.split(" ")
        if len(parts) != 3:
            continue
        a, op, b = parts
        xs, ys, good = by_op[op]
        xs.append(int(a))
        ys.append(int(b))
        good.append(bool(ok) and answer == truth)
    pngs = {}
    for op in coverage.operators:
        xs, ys, good = (np.array(v) for v in by_op[op])
        grid = np.zeros([width, width], np.int8)  # 0: not evaluated, 1: right, 2: wrong
        if len(xs):
            grid[ys - low, xs - low] = np.where(good, 1, 2)
        good = good.astype(bool)
        wrong = ~good if len(xs) else np.zeros([0], bool)
        # ~700 px wide, square map, legend below: TensorBoard's Images tab shows it at about
        # half that (its card is ~350 px wide), so the text is large and a wrong answer is a
        # big red dot
        fig, ax = plt.subplots(figsize=(7.0, 7.6))
        ax.imshow(grid, origin="lower", interpolation="nearest",
                  extent=(low - 0.5, high + 0.5, low - 0.5, high + 0.5),
                  cmap=ListedColormap(["white", "#9fd89f", "#d62728"]), vmin=0, vmax=2)
        n_wrong = int(wrong.sum()) if len(xs) else 0
        # wrong answers are rare: mark them so they show at any size (many: the cells are red)
        if 0 < n_wrong <= 2000:
            ax.scatter(xs[wrong], ys[wrong], s=200 if n_wrong <= 200 else 60, c="#d62728",
                       marker="o", edgecolors="black", linewidths=0.8)
        ax.scatter([], [], s=200, c="#d62728", marker="o", edgecolors="black", linewidths=0.8,
                   label=f"wrong ({n_wrong})")
        ax.scatter([], [], s=200, c="#9fd89f", marker="s",
                   label=f"right ({int(good.sum()) if len(xs) else 0})")
        ax.scatter([], [], s=200, c="white", edgecolors="#999999", marker="s",
                   label="not evaluated")
        # outside the axes: a legend must never cover cells of the map
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), borderaxespad=0.0,
                  ncol=3, fontsize=16, frameon=False, handletextpad=0.1, columnspacing=0.8)
        ax.set_xlabel("a", fontsize=18, labelpad=2)
        ax.set_ylabel("b", fontsize=18, labelpad=2)
        ax.locator_params(nbins=5)
        ax.tick_params(labelsize=16)
        accuracy = float(good.mean()) if len(xs) else float("nan")
        ax.set_title(f"a {op} b, {title}: exact match {accuracy:.5f}\n"
                     f"{n_wrong} wrong of {len(xs)}", fontsize=19)
        fig.tight_layout()
        pngs[op] = _png(fig)
    return pngs


def error_size_png(error_sizes: dict, title: str) -> bytes:
    plt = _pyplot()
    labels = list(error_sizes)
    counts = [error_sizes[k] for k in labels]
    fig, ax = plt.subplots(figsize=(7.0, 4.6))  # as wide as the error maps, large text
    bars = ax.bar(range(len(labels)), counts, color="#d62728")
    ax.bar_label(bars, fontsize=15)
    ax.margins(y=0.18)  # room for the tallest bar's label below the title
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=15)
    ax.tick_params(axis="y", labelsize=15)
    ax.set_xlabel("|answer - truth|", fontsize=17)
    ax.set_ylabel("wrong answers", fontsize=17)
    ax.set_title(f"error sizes: {title}", fontsize=19)
    fig.tight_layout()
    return _png(fig)
