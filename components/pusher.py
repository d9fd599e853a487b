"""Pusher: copy a blessed, infra-validated SavedModel to <serving_base>/<model_name>/<version>/.

The version directory appears atomically: the model is copied to a hidden temporary
directory beside it and renamed into place, so a server polling the base (TF Serving or
the local server) never sees a half-written model. Versions are integers that grow;
only the newest ``keep_versions`` are kept.
"""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger(__name__)


def existing_versions(model_base: str) -> list[int]:
    if not os.path.isdir(model_base):
        return []
    return sorted(int(v) for v in os.listdir(model_base) if v.isdigit())


def push(saved_model_dir: str, serving_base: str, model_name: str, keep_versions: int) -> dict:
    model_base = os.path.join(serving_base, model_name)
    os.makedirs(model_base, exist_ok=True)
    versions = existing_versions(model_base)
    version = (versions[-1] + 1) if versions else 1
    staging = os.path.join(model_base, f".incoming-{version}-{os.getpid()}")
    if os.path.exists(staging):
        shutil.rmtree(staging)
    shutil.copytree(saved_model_dir, staging)
    final = os.path.join(model_base, str(version))
    os.rename(staging, final)  # atomic on one file system
    removed = []
    for old in existing_versions(model_base)[:-keep_versions]:
        shutil.rmtree(os.path.join(model_base, str(old)), ignore_errors=True)
        removed.append(old)
    log.info("Pusher: pushed version %d to %s%s", version, final,
             f" (removed old versions {removed})" if removed else "")
    return {"pushed": True, "version": version, "path": final, "removed_versions": removed}


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
