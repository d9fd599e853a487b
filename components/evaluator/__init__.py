"""Evaluator: where the model is right and wrong, and the blessing that gates a push.

  scoring     running the serving function over equations; exact-match tables, error
              sizes, worst errors, confidence quality (AUROC, client threshold)
  exhaustive  every equation of the operand space, seen vs never seen in training
  plots       the error map per operator and the error-size histogram
  report      metrics.json as Markdown
  blessing    threshold and regression checks (the baseline: lstm_math.components.baseline)
  component   ``evaluate_model`` / ``run_evaluator``: all of the above, written to disk
"""

from lstm_math.components.evaluator.blessing import bless
from lstm_math.components.evaluator.component import (OPERATOR_NAMES, evaluate_model, hardware,
                                            run_evaluator)
from lstm_math.components.evaluator.exhaustive import all_equations, evaluate_exhaustive
from lstm_math.components.evaluator.plots import error_map_pngs, error_size_png
from lstm_math.components.evaluator.report import report_markdown
from lstm_math.components.evaluator.scoring import (KEEP_RIGHT, NO_ANSWER, NOT_A_NUMBER, SIZE_BUCKETS,
                                          SMALL_OPERAND_BOUNDS, auroc, confidence_quality,
                                          error_size_bucket, evaluate_fn, predict, read_split,
                                          summarize, uniform_estimate)

__all__ = [
    "KEEP_RIGHT", "NOT_A_NUMBER", "NO_ANSWER", "OPERATOR_NAMES", "SIZE_BUCKETS",
    "SMALL_OPERAND_BOUNDS", "all_equations", "auroc", "bless", "confidence_quality",
    "error_map_pngs", "error_size_bucket", "error_size_png", "evaluate_exhaustive",
    "evaluate_fn", "evaluate_model", "hardware", "predict", "read_split",
    "report_markdown", "run_evaluator", "summarize", "uniform_estimate",
]
