"""Launches the distributed Trainer / Tuner of a step as Kubernetes Jobs and watches them.

Used by ``lstm-math step Trainer|Tuner`` with ``cluster.launcher=kubernetes`` (the Kubeflow
pipeline's default): the step's pod creates the objects of ``lstm_math.pipeline.k8s`` in
``cluster.namespace`` (its service account needs create/get/list/watch/delete on jobs,
services and pods, and get on pods/log: ``deploy/k8s/rbac.yaml``), waits for them, and
writes the step's artifact like any other step.

Every wait is bounded: a pod still Pending after ``cluster.start_timeout_s`` (unschedulable,
image pull) fails the step naming it; a failed pod fails it naming the worker, its exit
reason and the last lines of its log; the whole step is bounded by
``cluster.step_timeout_s`` (the Jobs also carry it as ``activeDeadlineSeconds``).
"""

from __future__ import annotations

import json
import logging
import os
import time

from lstm_math.pipeline import k8s
from lstm_math.pipeline.step_errors import StepTimeout, WorkerFailed, check_deadlines

log = logging.getLogger("lstm_math.step")


class ClientApi:
    """The few calls the launcher makes, on the official ``kubernetes`` client (from kfp)."""

    def __init__(self, namespace: str):
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self.ns = namespace
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)

    def create(self, obj: dict) -> None:
        from kubernetes import utils

        utils.create_from_dict(self.api, obj, namespace=self.ns)

    def delete(self, kind: str, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            if kind == "Job":
                self.batch.delete_namespaced_job(name, self.ns, propagation_policy="Foreground")
            else:
                self.core.delete_namespaced_service(name, self.ns)
        except ApiException as e:
            if e.status != 404:
                raise

    def job(self, name: str) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.api.sanitize_for_serialization(self.batch.read_namespaced_job(name,
                                                                                      self.ns))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def pods(self, job_name: str) -> list[dict]:
        pods = self.core.list_namespaced_pod(self.ns, label_selector=f"job-name={job_name}")
        return self.api.sanitize_for_serialization(pods)["items"]

    def log_tail(self, pod: str, lines: int = 8) -> str:
        try:
            return self.core.read_namespaced_pod_log(pod, self.ns, tail_lines=lines)
        except Exception as e:  # noqa: BLE001 - the log is a courtesy
            return f"(no log: {e})"


def _condition(job: dict, kind: str) -> dict | None:
    for c in (job or {}).get("status", {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def _pod_failure(pod: dict) -> str:
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return f"{term.get('reason', 'Error')} (exit code {term.get('exitCode')})"
    return pod.get("status", {}).get("reason") or "Failed"


class KubernetesLauncher:
    def __init__(self, config, config_args: list, api=None, sleep=time.sleep,
                 clock=time.monotonic):
        self.config = config
        self.c = config.cluster
        self.config_args = list(config_args)
        self.api = api or ClientApi(self.c.namespace)
        self.sleep, self.clock = sleep, clock

    def _key(self, ctx) -> str:
        return f"{os.path.basename(ctx.output_dir.rstrip('/'))[:10]}"

    def _apply(self, objects: list) -> None:
        for obj in objects:  # a previous, failed launch of the same step: start afresh
            self.api.delete(obj["kind"], obj["metadata"]["name"])
        for obj in objects:
            self.api.create(obj)
            log.info("created %s %s/%s", obj["kind"], self.c.namespace, obj["metadata"]["name"])

    def _wait(self, job_name: str, what: str, label) -> None:
        """Until the Job succeeds; fails naming the pod (``label(pod)``) that failed."""
        started = self.clock()
        while True:
            job = self.api.job(job_name)
            if _condition(job, "Complete"):
                return
            pods = self.api.pods(job_name)
            failed = [p for p in pods if p.get("status", {}).get("phase") == "Failed"]
            if failed or _condition(job, "Failed"):
                if failed:
                    p = failed[0]
                    name = p["metadata"]["name"]
                    raise WorkerFailed(f"{what}: {label(p)} (pod {name}) failed: "
                                       f"{_pod_failure(p)}. Last lines of its log:\n"
                                       f"{self.api.log_tail(name)}")
                reason = _condition(job, "Failed")
                raise WorkerFailed(f"{what}: Job {job_name} failed: {reason.get('reason')}: "
                                   f"{reason.get('message', '')}")
            late = next((p for p in pods if p.get("status", {}).get("phase") == "Pending"), None)
            why = late and "; ".join(f"{c.get('reason')}: {c.get('message', '')}"
                                     for c in late.get("status", {}).get("conditions") or []
                                     if c.get("status") == "False")
            who = late and f"{label(late)} (pod {late['metadata']['name']})"
            check_deadlines(what, self.clock() - started, self.c, who and f"{who} still Pending",
                            why=why or "", unfinished=f"Job {job_name}")
            self.sleep(self.c.poll_interval_s)

    @staticmethod
    def _index(pod: dict) -> str:
        return pod.get("metadata", {}).get("annotations", {}).get(k8s.INDEX_ANNOTATION, "?")

    def train(self, ctx) -> dict:
        import tensorflow as tf

        key = self._key(ctx)
        names = k8s.names(self.c, key)
        examples = ctx.inputs["ExampleGen"].properties["examples_dir"]
        hparams = os.path.join(ctx.output_dir, "input_hparams.json")
        with tf.io.gfile.GFile(hparams, "w") as f:
            f.write(json.dumps(ctx.inputs["Tuner"].properties["best"], indent=2))
        objects = k8s.training_specs(self.c, key, self.config_args, examples, ctx.output_dir,
                                     hparams, self.config.runtime.pipeline_root)
        self._apply(objects)
        try:
            self._wait(names["train_job"], "Trainer",
                       lambda p: f"training worker {self._index(p)}")
        except (WorkerFailed, StepTimeout):
            self.api.delete("Job", names["train_job"])
            raise
        finally:
            self.api.delete("Service", names["train_service"])
        with tf.io.gfile.GFile(os.path.join(ctx.output_dir, "history.json")) as f:
            history = json.loads(f.read())
        return {"model_dir": ctx.output_dir, "strategy": "MultiWorkerMirroredStrategy",
                "workers": self.c.train_workers, "epochs": len(history),
                "final_metrics": {k: v for k, v in history[-1].items() if k != "epoch"},
                "worker_addresses": k8s.worker_addresses(self.c, key)}

    def tune(self, ctx) -> dict:
        from lstm_math.components.tuner import read_results

        key = self._key(ctx)
        names = k8s.names(self.c, key)
        examples = ctx.inputs["ExampleGen"].properties["examples_dir"]
        objects = k8s.tuner_specs(self.c, key, self.config_args, examples, ctx.output_dir,
                                  self.config.runtime.pipeline_root)
        self._apply(objects)
        try:
            # The chief ends when every trial is done; a worker Job that fails (a worker
            # beyond its restarts) fails the step first.
            started = self.clock()
            while True:
                self._check_workers(names["tuner_workers_job"])
                self._check_pending((names["tuner_chief_job"], "the tuner chief"),
                                    (names["tuner_workers_job"], "a tuner worker"),
                                    started=started)
                self._wait_once_or_done(names["tuner_chief_job"], started)
                if _condition(self.api.job(names["tuner_chief_job"]), "Complete"):
                    break
                self.sleep(self.c.poll_interval_s)
        finally:
            for kind, name in (("Job", names["tuner_workers_job"]),
                               ("Job", names["tuner_chief_job"]),
                               ("Service", names["tuner_service"])):
                self.api.delete(kind, name)
        best, trials = read_results(ctx.output_dir)
        return {"best": best, "trials": trials, "tuned": True, "role": "chief",
                "workers": self.c.tuner_workers}

    def _check_workers(self, job_name: str) -> None:
        job = self.api.job(job_name)
        if _condition(job, "Failed"):
            failed = [p for p in self.api.pods(job_name)
                      if p.get("status", {}).get("phase") == "Failed"]
            who = (f"tuner worker-{self._index(failed[-1])} (pod "
                   f"{failed[-1]['metadata']['name']}: {_pod_failure(failed[-1])})"
                   if failed else "a tuner worker")
            raise WorkerFailed(f"Tuner: {who} failed beyond cluster.worker_restarts="
                               f"{self.c.worker_restarts}")

    def _check_pending(self, *jobs, started: float) -> None:
        if self.clock() - started <= self.c.start_timeout_s:
            return
        for job_name, who in jobs:
            for p in self.api.pods(job_name):
                if p.get("status", {}).get("phase") == "Pending":
                    raise StepTimeout(f"Tuner: {who} (pod {p['metadata']['name']}) still "
                                      f"Pending after cluster.start_timeout_s="
                                      f"{self.c.start_timeout_s:.0f}s")

    def _wait_once_or_done(self, chief_job: str, started: float) -> None:
        job = self.api.job(chief_job)
        if _condition(job, "Failed") or any(
                p.get("status", {}).get("phase") == "Failed" for p in self.api.pods(chief_job)):
            pods = self.api.pods(chief_job)
            name = pods[0]["metadata"]["name"] if pods else chief_job
            raise WorkerFailed(f"Tuner: the tuner chief (pod {name}) failed: "
                               f"{_pod_failure(pods[0]) if pods else 'Job failed'}. Last lines "
                               f"of its log:\n{self.api.log_tail(name)}")
        if self.clock() - started > self.c.step_timeout_s:
            raise StepTimeout(f"Tuner: not finished after cluster.step_timeout_s="
                              f"{self.c.step_timeout_s:.0f}s")
