"""Evaluation: metrics of every task and the report that holds them.

Modules: ``text`` (answer / caption normalisation), ``qa`` (exact match, multiple choice),
``temporal`` (IoU, R@m, mIoU, NExT-GQA IoP and Acc@GQA), ``cider`` (CIDEr-D), ``meteor``
(the official METEOR 1.5 jar, when Java is present), ``dense`` (SODA_c and the densevid_eval
protocol), ``trajectory`` (L1, PCK), ``report`` (``EvalReport``: JSON + text) and
``evaluate`` (``evaluate_predictions``: items -> report). Definitions: docs/evaluation.md,
"Evaluation".
"""

from training.evaluation.evaluate import TASKS, EvalItem, evaluate_predictions
from training.evaluation.report import EvalReport, TaskSection

__all__ = ["TASKS", "EvalItem", "EvalReport", "TaskSection", "evaluate_predictions"]
