"""Pusher: copy a blessed, infra-validated SavedModel to <serving_base>/<model_name>/<version>/.

The version directory appears atomically: the model is copied to a hidden temporary
directory beside it and renamed into place, so a server polling the base (TF Serving or
the local server) never sees a half-written model. Versions are integers that grow;
only the newest ``keep_versions`` are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil

from serving import contract

log = logging.getLogger(__name__)


def content_digest(model_dir: str) -> str:
    """sha256 over a model directory's relative file paths and contents."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, model_dir).encode() + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def _remove_abandoned_staging(model_base: str) -> None:
    """Staging directories of pushes that died half way (their process is gone)."""
    for name in os.listdir(model_base):
        if not name.startswith(".incoming-"):
            continue
        try:
            pid = int(name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except (ValueError, IndexError, ProcessLookupError):
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(os.path.join(model_base, name), ignore_errors=True)


def push(saved_model_dir: str, serving_base: str, model_name: str, keep_versions: int) -> dict:
    model_base = os.path.join(serving_base, model_name)
    os.makedirs(model_base, exist_ok=True)
    _remove_abandoned_staging(model_base)
    versions = contract.versions(model_base)
    digest = content_digest(saved_model_dir)
    if versions and content_digest(os.path.join(model_base, str(versions[-1]))) == digest:
        final = os.path.join(model_base, str(versions[-1]))
        log.info("Pusher: this model is already served as version %d (%s)", versions[-1], final)
        return {"pushed": True, "version": versions[-1], "path": final, "digest": digest,
                "source": saved_model_dir, "already_pushed": True, "removed_versions": []}
    version = (versions[-1] + 1) if versions else 1
    staging = os.path.join(model_base, f".incoming-{version}-{os.getpid()}")
    if os.path.exists(staging):
        shutil.rmtree(staging)
    shutil.copytree(saved_model_dir, staging)
    final = os.path.join(model_base, str(version))
    os.rename(staging, final)  # atomic on one file system
    removed = []
    for old in contract.versions(model_base)[:-keep_versions]:
        shutil.rmtree(os.path.join(model_base, str(old)), ignore_errors=True)
        removed.append(old)
    log.info("Pusher: pushed version %d to %s%s", version, final,
             f" (removed old versions {removed})" if removed else "")
    return {"pushed": True, "version": version, "path": final, "digest": digest,
            "source": saved_model_dir, "already_pushed": False, "removed_versions": removed}


def run_pusher(saved_model_dir: str, blessing: dict, infra: dict, serving_base: str,
               model_name: str, keep_versions: int) -> dict:
    if not blessing.get("blessed"):
        reason = "not blessed by the Evaluator: " + "; ".join(blessing.get("reasons", []))
        log.warning("Pusher: not pushing: %s", reason)
        return {"pushed": False, "reason": reason}
    if not infra.get("passed"):
        reason = "InfraValidator failed: " + "; ".join(infra.get("problems", []))
        log.warning("Pusher: not pushing: %s", reason)
        return {"pushed": False, "reason": reason}
    return push(saved_model_dir, serving_base, model_name, keep_versions)
