"""The baseline: the model served at ``<serving_base>/<model_name>`` that a candidate is
judged against, named by where it is, its version and a digest of its files.

It is an input of the Evaluator like its upstream artifacts (TFX resolves "the latest
blessed model" as the Evaluator's baseline input): the pipeline resolves it before the
Evaluator's cache check and hashes its identity (version and content digest) into the
Evaluator's fingerprint, so a different served model, or the same version's files
replaced, is a new evaluation; "no model" is a baseline too. Where it is served is not part
of the identity: the same pipeline pushing to another empty serving base reuses its
blessing (judged against no model either way). The Evaluator records the baseline it judged against in ``blessing.json``
(``judged_against``), and the Pusher, under its push lock, pushes only while the latest
version at its target is still that one.

Cheap to resolve: a directory listing and one sha256 over the latest version's files; no
TensorFlow for local paths (URLs go through ``tf.io.gfile``).
"""

from __future__ import annotations

import hashlib
import os

from lstm_math.components.errors import StepFailed
from lstm_math.serving import contract


def _is_url(path: str) -> bool:
    return "://" in path


def content_digest(model_dir: str) -> str:
    """sha256 over a model directory's relative file paths and contents (local or URL)."""
    h = hashlib.sha256()
    if _is_url(model_dir):
        import tensorflow as tf

        gfile = tf.io.gfile
        files = []
        for root, _dirs, names in gfile.walk(model_dir):
            files += [os.path.join(root, n) for n in names]
        opener = lambda p: gfile.GFile(p, "rb")  # noqa: E731
        rel = lambda p: p[len(model_dir.rstrip("/")) + 1:]  # noqa: E731
    else:
        files = []
        for root, dirs, names in os.walk(model_dir):
            dirs.sort()
            files += [os.path.join(root, n) for n in names]
        opener = lambda p: open(p, "rb")  # noqa: E731
        rel = lambda p: os.path.relpath(p, model_dir)  # noqa: E731
    for path in sorted(files, key=rel):
        h.update(rel(path).encode() + b"\0")
        with opener(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def resolve_baseline(serving_base: str, model_name: str) -> dict:
    """``{"serving_base", "model_name", "version", "digest"}`` of the latest complete version
    there (``serving_base`` absolute, a URL as given); version and digest are None when
    nothing is served."""
    base = serving_base if _is_url(serving_base) else os.path.abspath(serving_base)
    version = contract.latest_version(os.path.join(base, model_name))
    digest = (None if version is None
              else content_digest(os.path.join(base, model_name, str(version))))
    return {"serving_base": base, "model_name": model_name, "version": version,
            "digest": digest}


def version_dir(baseline: dict) -> str | None:
    """The served version's directory, or None when nothing was served."""
    if baseline.get("version") is None:
        return None
    return os.path.join(baseline["serving_base"], baseline["model_name"],
                        str(baseline["version"]))


def describe(baseline: dict) -> str:
    """'no model' or 'version 3 (sha256 1a2b3c4d5e6f)'."""
    if baseline.get("version") is None:
        return "no model"
    return f"version {baseline['version']} (sha256 {baseline['digest'][:12]})"


def identity(baseline: dict) -> dict:
    """What a judgment against this baseline depends on: the served version and its content
    digest. Where it is served is not part of it: the same files (or no model) at another
    serving base are the same baseline, and a blessing judged against them holds there."""
    return {"version": baseline.get("version"), "digest": baseline.get("digest")}


def same(a: dict, b: dict) -> bool:
    return identity(a) == identity(b)


class BaselineChanged(StepFailed):
    """The served model is no longer the one the blessing was judged against."""


def check_unchanged(judged_against: dict | None, serving_base: str, model_name: str,
                    also_accept=()) -> dict:
    """Raises BaselineChanged (one line: from what to what, and what to run) unless the
    latest version at ``<serving_base>/<model_name>`` is the one the blessing was judged
    against (the same version and content, wherever that was served), or one of
    ``also_accept`` (pushes of this same blessing). Returns it."""
    now = resolve_baseline(serving_base, model_name)
    target = os.path.join(now["serving_base"], model_name)
    rerun = ("rerun the pipeline (e.g. `lstm-math run` with the same flags): its Evaluator "
             f"then judges the candidate against {describe(now)}")
    if not judged_against:
        raise BaselineChanged(
            f"Pusher: not pushed: the blessing does not say which served model it was judged "
            f"against (an Evaluator output older than this Pusher); {rerun}")
    if same(judged_against, now) or any(same(a, now) for a in also_accept):
        return now
    judged_target = os.path.join(judged_against["serving_base"], judged_against["model_name"])
    if judged_target != target:
        raise BaselineChanged(
            f"Pusher: not pushed: the blessing was judged against {describe(judged_against)} "
            f"at {judged_target}; the push target {target} serves {describe(now)}; {rerun}")
    raise BaselineChanged(
        f"Pusher: not pushed: the model served at {target} changed after the Evaluator judged "
        f"this candidate, from {describe(judged_against)} to {describe(now)}; {rerun}")
