"""The ``cluster:`` config section: how a step runs on several processes or pods.

One dataclass, validated on its own (``validate_cluster``), hooked into
``lstm_math.config.PipelineConfig`` with one field and one call (a leaf: it imports nothing
of the project). No component reads it, so
it is in no node's fingerprint: running the same config on one machine or on a cluster
reuses the same artifacts.

Every wait of a distributed step has a bound from here:
  start_timeout_s    a worker process / pod must be up (listening, scheduled) by then
  worker_timeout_s   a tuner worker that cannot reach the chief this long exits (status 3)
  step_timeout_s     the whole distributed step (training or tuning), hard limit
  poll_interval_s    how often the launcher looks at its workers
"""

from __future__ import annotations

import dataclasses
import math
import re

DEFAULT_IMAGE = "ghcr.io/lstm-math/lstm-math:0.1.0"
LAUNCHERS = ("local", "processes", "containers", "kubernetes")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,40}[a-z0-9])?")
# Kubernetes names (k8s.io/apimachinery validation): a DNS-1123 label (a namespace) and a
# DNS-1123 subdomain (a PersistentVolumeClaim, a ServiceAccount).
_K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# A Kubernetes resource quantity (resource.Quantity): a decimal number and a suffix, a binary
# one (Ki Mi Gi Ti Pi Ei), a decimal one (m k M G T P E) or an exponent (e3, E-3).
_QUANTITY = re.compile(r"(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)"
                       r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][-+]?[0-9]+)?")


def _is_quantity(text) -> bool:
    """A positive Kubernetes quantity ('500m', '2', '1.5', '4Gi', '512Mi')."""
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    return bool(match) and float(match["number"]) > 0


def _is_subdomain(text) -> bool:
    return isinstance(text, str) and len(text) <= 253 and bool(_K8S_SUBDOMAIN.fullmatch(text))


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    # How the Trainer and the Tuner run: local (one process, as `lstm-math run`), processes
    # (workers as local processes on 127.0.0.1: the rehearsal), containers (containers of
    # `image` on the engine's network `network`) or kubernetes (pods).
    launcher: str = "local"
    train_workers: int = 1  # >1: MultiWorkerMirroredStrategy over this many workers
    tuner_workers: int = 0  # >0: keras-tuner chief (the step) + this many workers
    worker_restarts: int = 1  # a dead tuner worker is restarted (same id) this many times
    start_timeout_s: float = 300.0
    worker_timeout_s: float = 120.0
    step_timeout_s: float = 7200.0
    poll_interval_s: float = 1.0
    train_port: int = 12345  # MultiWorkerMirroredStrategy's gRPC port on every worker
    oracle_port: int = 8000  # keras-tuner chief's oracle port
    image: str = DEFAULT_IMAGE  # the image of every step and worker (containers, Kubernetes)
    # launcher=containers: the engine's CLI and the user-defined network the workers share
    engine: str = "podman"
    network: str = "lstm-math"
    # Kubernetes
    namespace: str = "default"
    name_prefix: str = "lstm-math"
    volume_claim: str = "lstm-math-data"  # a ReadWriteMany PVC mounted at mount_path
    mount_path: str = "/data"
    cpu: str = "2"
    memory: str = "4Gi"
    gpus: int = 0
    service_account: str = ""


def validate_cluster(c: ClusterConfig, require) -> None:
    """``require(condition, field, message)`` raises the config's ConfigError."""
    require(c.launcher in LAUNCHERS, "cluster.launcher",
            f"{', '.join(LAUNCHERS[:-1])} or {LAUNCHERS[-1]}, got {c.launcher!r}")
    require(c.engine in ("podman", "docker"), "cluster.engine",
            f"podman or docker, got {c.engine!r}")
    require(bool(_DNS_LABEL.fullmatch(c.network)), "cluster.network",
            "a network name: lowercase letters, digits and '-', starting with a letter")
    require(1 <= c.train_workers <= 256, "cluster.train_workers", "must be in 1..256")
    require(0 <= c.tuner_workers <= 256, "cluster.tuner_workers", "must be in 0..256")
    require(0 <= c.worker_restarts <= 10, "cluster.worker_restarts", "must be in 0..10")
    for name in ("start_timeout_s", "worker_timeout_s", "step_timeout_s", "poll_interval_s"):
        value = getattr(c, name)
        require(value > 0 and math.isfinite(value), f"cluster.{name}",
                f"must be a positive number of seconds, got {value!r}")
    require(c.poll_interval_s <= c.worker_timeout_s, "cluster.poll_interval_s",
            "must not exceed cluster.worker_timeout_s")
    for name in ("train_port", "oracle_port"):
        require(1 <= getattr(c, name) <= 65535, f"cluster.{name}", "must be a port (1..65535)")
    require(c.train_port != c.oracle_port, "cluster.oracle_port", "must differ from train_port")
    require(bool(c.image) and not any(ch.isspace() for ch in c.image), "cluster.image",
            "an image reference")
    require(bool(_DNS_LABEL.fullmatch(c.name_prefix)), "cluster.name_prefix",
            "lowercase letters, digits and '-', starting with a letter, at most 42 characters")
    require(bool(_K8S_LABEL.fullmatch(c.namespace)),
            "cluster.namespace", "a Kubernetes namespace name (lowercase letters, digits and "
            "'-', at most 63 characters)")
    require(c.mount_path.startswith("/"), "cluster.mount_path", "an absolute path")
    require(c.gpus >= 0, "cluster.gpus", "must be >= 0")
    for name in ("cpu", "memory"):
        require(_is_quantity(getattr(c, name)), f"cluster.{name}",
                "a positive Kubernetes quantity, e.g. "
                + ("'500m', '2' or '1.5' (cores)" if name == "cpu" else "'4Gi' or '512Mi'")
                + f", got {_show(getattr(c, name))}")
    require(c.volume_claim == "" or _is_subdomain(c.volume_claim), "cluster.volume_claim",
            "a PersistentVolumeClaim name (lowercase letters, digits, '-' and '.', at most 253 "
            f"characters) or '' (none), got {_show(c.volume_claim)}")
    require(c.service_account == "" or _is_subdomain(c.service_account),
            "cluster.service_account", "a ServiceAccount name (lowercase letters, digits, '-' "
            f"and '.', at most 253 characters) or '' (the namespace's default), got "
            f"{_show(c.service_account)}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
