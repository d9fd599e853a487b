"""Kubernetes specs for the distributed Trainer and Tuner (plain dicts; no client needed).

Training: a **headless Service + an Indexed Job** (core Kubernetes >= 1.24, no operator).
Each pod of an Indexed Job gets a stable DNS name, ``<job>-<index>.<service>``, and its index
in ``JOB_COMPLETION_INDEX``; ``lstm-math pod -- train ...`` turns that index into the pod's
own ``TF_CONFIG`` (``tf_config_for``) before TensorFlow starts. Why not a Kubeflow ``TFJob``:
it needs the Training Operator installed (and Kubeflow Trainer v2 drops TFJob), whereas an
Indexed Job runs on any cluster, fails as a whole when one pod fails (``backoffLimit: 0``:
MultiWorkerMirroredStrategy cannot continue without a worker; rerunning the step resumes
from the last epoch's checkpoint) and has a hard ``activeDeadlineSeconds``.

Tuning: keras-tuner's own distributed mode. A chief Job (one pod: the oracle) behind a
ClusterIP Service on ``cluster.oracle_port``, and an Indexed Job of workers whose
``KERASTUNER_TUNER_ID`` is ``worker-<index>`` (stable across pod restarts, so a restarted
worker gets its unfinished trial back: ``backoffLimitPerIndex`` = ``cluster.worker_restarts``).

Every pod mounts the ``cluster.volume_claim`` PVC at ``cluster.mount_path`` (a ReadWriteMany
volume holding the pipeline root), unless the pipeline root is a URL (``gs://``...).
"""

from __future__ import annotations

import json
import os
import re

INDEX_ENV = "JOB_COMPLETION_INDEX"
CLUSTER_ENV = "LSTM_MATH_TF_CLUSTER"  # JSON {"worker": [host:port, ...]}
TUNER_WORKER_ENV = "LSTM_MATH_TUNER_WORKER"  # "1": KERASTUNER_TUNER_ID=worker-<index>
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def names(cluster, key: str) -> dict:
    """Object names of one launch; ``key`` tells launches apart (e.g. a fingerprint)."""
    base = f"{cluster.name_prefix}-{key}"[:50].rstrip("-")
    return {"train_job": f"{base}-train", "train_service": f"{base}-train",
            "tuner_chief_job": f"{base}-tuner-chief", "tuner_service": f"{base}-oracle",
            "tuner_workers_job": f"{base}-tuner-workers"}


# A Kubernetes object name here is a DNS-1123 label (at most 63 characters); an Indexed Job's
# pods are named and addressed `<job>-<index>`, so every name keeps room for that suffix.
MAX_NAME = 63
INDEX_ROOM = 6  # "-" and up to five digits
_KEY = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def key_problem(cluster, key: str) -> str | None:
    """Why ``key`` cannot tell a launch apart in object names (None when it can): the names
    are ``<cluster.name_prefix>-<key>-<suffix>``, each a DNS-1123 label with room left for a
    pod's index, and the key is a label value too."""
    if not _KEY.match(key):
        return ("Kubernetes names take lowercase letters, digits and '-', starting and "
                "ending with a letter or digit")
    longest = max(names(cluster, "").values(), key=len)  # the prefix, the longest suffix
    room = MAX_NAME - INDEX_ROOM - len(longest) - 1
    if len(key) > room:
        name = f"{cluster.name_prefix}-{key}{longest[len(cluster.name_prefix):]}"
        return (f"too long: {name!r} would have {len(name)} characters; object names are "
                f"DNS labels of at most {MAX_NAME}, less a pod's '-<index>' (so at most "
                f"{room} characters of key with cluster.name_prefix {cluster.name_prefix!r})")
    return None


def worker_addresses(cluster, key: str) -> list[str]:
    n = names(cluster, key)
    return [f"{n['train_job']}-{i}.{n['train_service']}.{cluster.namespace}.svc.cluster.local:"
            f"{cluster.train_port}" for i in range(cluster.train_workers)]


def tf_config_for(cluster_spec: dict, index: int) -> str:
    """The TF_CONFIG of worker ``index``: every worker's address, and which one this is."""
    workers = cluster_spec["worker"]
    if not 0 <= index < len(workers):
        raise ValueError(f"worker index {index} outside 0..{len(workers) - 1}")
    return json.dumps({"cluster": {"worker": list(workers)},
                       "task": {"type": "worker", "index": index}})


def pod_environment(environ: dict) -> dict:
    """What ``lstm-math pod`` adds to its environment, from the Indexed Job's index."""
    extra = {}
    index = environ.get(INDEX_ENV)
    if environ.get(CLUSTER_ENV) and "TF_CONFIG" not in environ:
        if index is None:
            raise ValueError(f"{CLUSTER_ENV} is set but {INDEX_ENV} is not (not an Indexed Job)")
        extra["TF_CONFIG"] = tf_config_for(json.loads(environ[CLUSTER_ENV]), int(index))
    if environ.get(TUNER_WORKER_ENV) and "KERASTUNER_TUNER_ID" not in environ:
        if index is None:
            raise ValueError(f"{TUNER_WORKER_ENV} is set but {INDEX_ENV} is not")
        extra["KERASTUNER_TUNER_ID"] = f"worker-{int(index)}"
    return extra


def _uses_volume(cluster, pipeline_root: str) -> bool:
    return "://" not in pipeline_root and bool(cluster.volume_claim)


def _container(cluster, name: str, args: list, env: dict, ports: list, pipeline_root: str):
    resources = {"cpu": cluster.cpu, "memory": cluster.memory}
    limits = dict(resources)
    if cluster.gpus:
        limits["nvidia.com/gpu"] = cluster.gpus
    c = {"name": name, "image": cluster.image, "command": ["lstm-math"], "args": list(args),
         "env": [{"name": k, "value": v} for k, v in env.items()],
         "resources": {"requests": resources, "limits": limits},
         "ports": [{"containerPort": p, "name": n} for n, p in ports],
         "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True}}
    if _uses_volume(cluster, pipeline_root):
        c["volumeMounts"] = [{"name": "pipeline-root", "mountPath": cluster.mount_path}]
    return c


def _pod_spec(cluster, containers: list, pipeline_root: str, subdomain: str | None = None):
    spec = {"restartPolicy": "Never", "containers": containers}
    if subdomain:
        spec["subdomain"] = subdomain
    if cluster.service_account:
        spec["serviceAccountName"] = cluster.service_account
    if _uses_volume(cluster, pipeline_root):
        spec["volumes"] = [{"name": "pipeline-root",
                            "persistentVolumeClaim": {"claimName": cluster.volume_claim}}]
    return spec


def _meta(cluster, name: str, labels: dict) -> dict:
    return {"name": name, "namespace": cluster.namespace,
            "labels": {"app.kubernetes.io/name": "lstm-math", **labels}}


def training_specs(cluster, key: str, config_args: list, examples: str, output: str,
                   hparams: str | None, pipeline_root: str) -> list[dict]:
    """Headless Service + Indexed Job: ``cluster.train_workers`` pods of ``lstm-math train``."""
    n = names(cluster, key)
    labels = {"lstm-math/step": "trainer", "lstm-math/launch": key}
    addresses = worker_addresses(cluster, key)
    args = ["pod", "--", "train", *config_args, "--examples", examples, "--output", output]
    if hparams:
        args += ["--hparams", hparams]
    env = {CLUSTER_ENV: json.dumps({"worker": addresses}), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONUNBUFFERED": "1"}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(cluster, n["train_service"], labels),
               "spec": {"clusterIP": "None", "selector": {"job-name": n["train_job"]},
                        "publishNotReadyAddresses": True,
                        "ports": [{"name": "grpc", "port": cluster.train_port}]}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(cluster, n["train_job"], labels),
           "spec": {"completionMode": "Indexed", "completions": cluster.train_workers,
                    "parallelism": cluster.train_workers, "backoffLimit": 0,
                    "activeDeadlineSeconds": int(cluster.step_timeout_s),
                    "ttlSecondsAfterFinished": 3600,
                    "template": {"metadata": {"labels": labels},
                                 "spec": _pod_spec(cluster, [_container(
                                     cluster, "worker", args, env,
                                     [("grpc", cluster.train_port)], pipeline_root)],
                                     pipeline_root, subdomain=n["train_service"])}}}
    return [service, job]


def tuner_specs(cluster, key: str, config_args: list, examples: str, output: str,
                pipeline_root: str) -> list[dict]:
    """Chief Job + its Service + an Indexed Job of ``cluster.tuner_workers`` workers."""
    n = names(cluster, key)
    chief_labels = {"lstm-math/step": "tuner", "lstm-math/role": "chief", "lstm-math/launch": key}
    worker_labels = {"lstm-math/step": "tuner", "lstm-math/role": "worker",
                     "lstm-math/launch": key}
    io = ["--examples", examples, "--output", output]
    oracle_host = f"{n['tuner_service']}.{cluster.namespace}.svc.cluster.local"
    base_env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    chief = _container(cluster, "chief", ["tune", *config_args, "--role", "chief", "--oracle",
                                          f"0.0.0.0:{cluster.oracle_port}", *io],
                       base_env, [("oracle", cluster.oracle_port)], pipeline_root)
    worker = _container(cluster, "worker", [
        "pod", "--", "tune", *config_args, "--role", "worker", "--oracle",
        f"{oracle_host}:{cluster.oracle_port}", "--chief-timeout",
        str(int(cluster.worker_timeout_s)), *io],
        {**base_env, TUNER_WORKER_ENV: "1"}, [], pipeline_root)
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": _meta(cluster, n["tuner_service"], chief_labels),
               "spec": {"selector": {"job-name": n["tuner_chief_job"]},
                        "ports": [{"name": "oracle", "port": cluster.oracle_port,
                                   "targetPort": cluster.oracle_port}]}}
    chief_job = {"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": _meta(cluster, n["tuner_chief_job"], chief_labels),
                 "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 0,
                          "activeDeadlineSeconds": int(cluster.step_timeout_s),
                          "ttlSecondsAfterFinished": 3600,
                          "template": {"metadata": {"labels": chief_labels},
                                       "spec": _pod_spec(cluster, [chief], pipeline_root)}}}
    workers_job = {"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": _meta(cluster, n["tuner_workers_job"], worker_labels),
                   "spec": {"completionMode": "Indexed", "completions": cluster.tuner_workers,
                            "parallelism": cluster.tuner_workers,
                            "backoffLimitPerIndex": cluster.worker_restarts,
                            "maxFailedIndexes": 0,
                            "activeDeadlineSeconds": int(cluster.step_timeout_s),
                            "ttlSecondsAfterFinished": 3600,
                            "template": {"metadata": {"labels": worker_labels},
                                         "spec": _pod_spec(cluster, [worker], pipeline_root)}}}
    return [service, chief_job, workers_job]


def to_yaml(objects: list[dict]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)


def write_specs(config, out_dir: str, key: str = "manual", examples: str | None = None,
                trainer_output: str | None = None, tuner_output: str | None = None,
                config_args: list | None = None) -> list[str]:
    """Writes ``train.yaml`` and ``tune.yaml`` for ``kubectl apply -f``; returns the paths."""
    c = config.cluster
    root = config.runtime.pipeline_root
    examples = examples or os.path.join(root, "ExampleGen", "<fingerprint>")
    config_args = config_args if config_args is not None else ["--config", "default"]
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, objects in (
            ("train.yaml", training_specs(c, key, config_args, examples,
                                          trainer_output or os.path.join(root, "trainer-" + key),
                                          None, root)),
            ("tune.yaml", tuner_specs(c, key, config_args, examples,
                                      tuner_output or os.path.join(root, "tuner-" + key), root))):
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write(to_yaml(objects))
        written.append(path)
    return written
