"""Pusher: copy a blessed, infra-validated SavedModel to <serving_base>/<model_name>/<version>/.

The gate: ``run_pusher`` pushes only a blessed, infra-validated model, and only while the
latest complete version at the target is still the one its blessing was judged against
(``blessing["judged_against"]``, see ``lstm_math.components.baseline``): checked under the
push lock, so another pipeline's push between this candidate's evaluation and its push
makes this push fail with ``BaselineChanged`` (one line: the baseline from what to what;
rerun, and the Evaluator judges the candidate against the new model).

A server polling the base (TF Serving, the local server) must never load a half-written
version, and concurrent pushes must not collide. Versions are integers that grow (the one
rule: ``lstm_math.serving.contract.versions``); only the newest ``keep_versions`` are kept.

Local paths (one POSIX file system, a shared mount):
  * an exclusive ``fcntl.flock`` on ``<model_base>/.push.lock`` serialises pushes (four
    pushes at once get versions n+1..n+4, never ENOTEMPTY or a lost version); a push that
    cannot take the lock within ``lock_timeout_s`` fails naming the lock file;
  * the model is copied to a hidden ``.incoming-<version>-<pid>`` directory beside the
    target and renamed into place: atomic, the version appears whole.

URLs (``gs://``, ``s3://``, ``hdfs://`` ... through ``tf.io.gfile``), where renaming a
directory is a copy of every object and not atomic:
  * the model is copied to a non-numeric ``.incoming-<version>-<host>-<pid>/`` (servers and
    ``contract.versions`` ignore it), then moved into ``<version>/`` file by file: variables,
    assets and everything else first, ``saved_model.pb`` last. So ``<version>/saved_model.pb``
    exists only once every file it refers to is in place.
  * The window that remains: between the first and the last per-file move (server-side
    copies, about a second for this model) ``<version>/`` exists without
    ``saved_model.pb``. TF Serving polling at that moment fails that load ("SavedModel
    not found"), logs it and retries (``--max_num_load_retries``, default 5, every
    ``--load_retry_interval_micros``, default 60 s) and the next poll finds the version
    whole; the versions it already serves are untouched. The local server and
    ``contract.versions(complete_only=True)`` skip versions without ``saved_model.pb``.
  * No lock on object stores: two pushers writing the same model name at the same moment
    could pick the same version number. Run one Pusher per model name at a time (the
    pipeline's Pusher is one step; KFP runs it once per run).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import socket
import time

from lstm_math.components.baseline import (BaselineChanged, check_unchanged,  # noqa: F401
                                 content_digest)
from lstm_math.serving import contract

log = logging.getLogger(__name__)

LOCK_FILE = ".push.lock"
STAGING_PREFIX = ".incoming-"


def _is_url(path: str) -> bool:
    return "://" in path


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


class PushLockTimeout(TimeoutError):
    pass


@contextlib.contextmanager
def push_lock(model_base: str, timeout_s: float):
    """Exclusive lock on ``<model_base>/.push.lock`` (flock: released if the process dies)."""
    path = os.path.join(model_base, LOCK_FILE)
    deadline = time.monotonic() + timeout_s
    with open(path, "a") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise PushLockTimeout(
                        f"Pusher: could not take the push lock {path} within {timeout_s:.0f}s "
                        "(another push of this model is still running)") from None
                time.sleep(0.05)
        try:
            yield path
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _remove_abandoned_staging(model_base: str) -> None:
    """Staging directories of pushes that died half way. Called with the push lock held,
    so no live push owns one (a staging directory only exists while its push holds it)."""
    for name in os.listdir(model_base):
        if name.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(model_base, name), ignore_errors=True)


def _already_served(model_base: str, versions: list, digest: str, source: str):
    if versions and content_digest(os.path.join(model_base, str(versions[-1]))) == digest:
        final = os.path.join(model_base, str(versions[-1]))
        log.info("Pusher: this model is already served as version %d (%s)", versions[-1], final)
        return {"pushed": True, "version": versions[-1], "path": final, "digest": digest,
                "source": source, "already_pushed": True, "removed_versions": []}
    return None


def _push_local(saved_model_dir, model_base, keep_versions, digest, lock_timeout_s, check):
    with push_lock(model_base, lock_timeout_s):
        _remove_abandoned_staging(model_base)
        versions = contract.versions(model_base)
        done = _already_served(model_base, versions, digest, saved_model_dir)
        if done:
            return done
        check()
        version = (versions[-1] + 1) if versions else 1
        staging = os.path.join(model_base, f"{STAGING_PREFIX}{version}-{os.getpid()}")
        shutil.copytree(saved_model_dir, staging)
        final = os.path.join(model_base, str(version))
        os.rename(staging, final)  # atomic on one file system
        removed = []
        for old in contract.versions(model_base)[:-keep_versions]:
            shutil.rmtree(os.path.join(model_base, str(old)), ignore_errors=True)
            removed.append(old)
    return {"version": version, "path": final, "removed_versions": removed}


def _copy_tree_gfile(src: str, dst: str) -> None:
    gfile = _gfile()
    src = src.rstrip("/")
    for root, _dirs, names in gfile.walk(src):
        target = dst + root[len(src):]
        gfile.makedirs(target)
        for name in names:
            gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def _move_saved_model_last(staging: str, final: str) -> list:
    """Moves every file of ``staging`` into ``final``, ``saved_model.pb`` last; returns the
    order (relative paths) in which they appeared."""
    gfile = _gfile()
    files = []
    for root, _dirs, names in gfile.walk(staging):
        files += [os.path.join(root, n)[len(staging) + 1:] for n in names]
    files.sort(key=lambda rel: (rel == contract.SAVED_MODEL_FILE, rel))
    for rel in files:
        gfile.makedirs(os.path.dirname(os.path.join(final, rel)))
        gfile.rename(os.path.join(staging, rel), os.path.join(final, rel), overwrite=True)
    gfile.rmtree(staging)
    return files


def _push_url(saved_model_dir, model_base, keep_versions, digest, check):
    gfile = _gfile()
    versions = contract.versions(model_base)
    done = _already_served(model_base, versions, digest, saved_model_dir)
    if done:
        return done
    check()
    version = (versions[-1] + 1) if versions else 1
    final = os.path.join(model_base, str(version))
    if gfile.exists(final):
        raise RuntimeError(f"Pusher: {final} appeared while this push chose it (another pusher "
                           "is writing this model); push again")
    staging = os.path.join(model_base, f"{STAGING_PREFIX}{version}-{socket.gethostname()}-"
                                       f"{os.getpid()}")
    _copy_tree_gfile(saved_model_dir, staging)
    order = _move_saved_model_last(staging, final)
    removed = []
    for old in contract.versions(model_base)[:-keep_versions]:
        gfile.rmtree(os.path.join(model_base, str(old)))
        removed.append(old)
    return {"version": version, "path": final, "removed_versions": removed,
            "file_order": order}


def push(saved_model_dir: str, serving_base: str, model_name: str, keep_versions: int,
         lock_timeout_s: float = 600.0, judged_against: dict | None = None,
         also_accept=()) -> dict:
    """``judged_against``: the baseline the blessing compared with
    (``lstm_math.components.baseline``); when given, the push happens only while the latest version
    at the target is still that one or one of ``also_accept``, else BaselineChanged. A
    model identical to the latest version is never pushed again."""
    model_base = os.path.join(serving_base, model_name)
    digest = content_digest(saved_model_dir)

    def check():
        if judged_against is not None:
            check_unchanged(judged_against, serving_base, model_name, also_accept)

    if _is_url(model_base):
        _gfile().makedirs(model_base)
        out = _push_url(saved_model_dir, model_base, keep_versions, digest, check)
    else:
        os.makedirs(model_base, exist_ok=True)
        out = _push_local(saved_model_dir, model_base, keep_versions, digest, lock_timeout_s,
                          check)
    if out.get("already_pushed"):
        return out
    log.info("Pusher: pushed version %d to %s%s", out["version"], out["path"],
             f" (removed old versions {out['removed_versions']})"
             if out["removed_versions"] else "")
    return {"pushed": True, "digest": digest, "source": saved_model_dir,
            "already_pushed": False, **out}


def run_pusher(saved_model_dir: str, blessing: dict, infra: dict, serving_base: str,
               model_name: str, keep_versions: int, lock_timeout_s: float = 600.0,
               also_accept=()) -> dict:
    """Pushes a blessed, infra-validated model while the served model is still the one the
    blessing was judged against (``blessing["judged_against"]``); otherwise raises
    BaselineChanged, whose one-line message says from what to what and to rerun.
    ``also_accept``: baselines that are earlier pushes of this same blessing."""
    if not blessing.get("blessed"):
        reason = "not blessed by the Evaluator: " + "; ".join(blessing.get("reasons", []))
        log.warning("Pusher: not pushing: %s", reason)
        return {"pushed": False, "reason": reason}
    if not infra.get("passed"):
        reason = "InfraValidator failed: " + "; ".join(infra.get("problems", []))
        log.warning("Pusher: not pushing: %s", reason)
        return {"pushed": False, "reason": reason}
    if not blessing.get("judged_against"):
        check_unchanged(None, serving_base, model_name)  # raises, naming what to run
    return push(saved_model_dir, serving_base, model_name, keep_versions,
                lock_timeout_s=lock_timeout_s, judged_against=blessing["judged_against"],
                also_accept=also_accept)
