"""Errors a component raises when it cannot complete and can say why in one line.

``StepFailed``: the step did not produce its artifact (nothing is cached), for a reason
that is not a bug: the command line prints its message as one line and exits 1, and a
rerun tries again. Its subclasses say which kind of reason.
"""

from __future__ import annotations


class StepFailed(RuntimeError):
    """A step could not complete; the message says why and what to do, in one line."""


class ValidationIncomplete(StepFailed):
    """A check could not reach a verdict here (it ran out of time, say): that says nothing
    about the model, so no verdict is recorded and a rerun checks again."""
