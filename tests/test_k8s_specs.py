"""Kubernetes specs of the distributed Trainer and Tuner: names, ports, volumes and the
TF_CONFIG every training pod computes from its Indexed Job index; the launcher against a
fake API (failed pod named, pending pod times out)."""

import json
import os

import pytest
import yaml

from lstm_math.pipeline import k8s
from lstm_math.config import load_config

ARGS = ["--config", "smoke", "--set", "trainer.epochs=2"]


def _config(*overrides):
    return load_config("smoke", ["runtime.pipeline_root=/data/root", *overrides])


def _by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_training_specs_give_every_pod_its_own_tf_config():
    c = _config("cluster.train_workers=3", "cluster.namespace=ml", "cluster.train_port=2222",
                "cluster.image=registry.example/lstm-math:1").cluster
    objects = k8s.training_specs(c, "abc123", ARGS, "/data/root/ExampleGen/e",
                                 "/data/root/Trainer/t", "/data/root/Trainer/t/h.json",
                                 "/data/root")
    (service,), (job,) = _by_kind(objects, "Service"), _by_kind(objects, "Job")
    assert service["metadata"]["name"] == job["metadata"]["name"] == "lstm-math-abc123-train"
    assert service["spec"]["clusterIP"] == "None"  # headless: one DNS record per pod
    assert service["spec"]["selector"] == {"job-name": "lstm-math-abc123-train"}
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 2222}]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3 and spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == int(c.step_timeout_s)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] and pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/lstm-math:1"
    assert container["command"] == ["lstm-math"]
    assert container["args"][:3] == ["pod", "--", "train"]
    assert container["args"][3:] == ARGS + ["--examples", "/data/root/ExampleGen/e", "--output",
                                            "/data/root/Trainer/t", "--hparams",
                                            "/data/root/Trainer/t/h.json"]
    assert container["ports"] == [{"containerPort": 2222, "name": "grpc"}]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"] == [{"name": "pipeline-root",
                               "persistentVolumeClaim": {"claimName": "lstm-math-data"}}]
    assert container["volumeMounts"] == [{"name": "pipeline-root", "mountPath": "/data"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    # What each of the 3 pods computes at start (lstm-math pod): its own index, everyone's
    # stable DNS name <job>-<index>.<service>.<namespace>.svc.
    hosts = [f"lstm-math-abc123-train-{i}.lstm-math-abc123-train.ml.svc.cluster.local:2222"
             for i in range(3)]
    for index in range(3):
        extra = k8s.pod_environment({**env, k8s.INDEX_ENV: str(index)})
        tf_config = json.loads(extra["TF_CONFIG"])
        assert tf_config == {"cluster": {"worker": hosts},
                             "task": {"type": "worker", "index": index}}
        # The pod's own hostname (<job>-<index>) is the address at its index.
        assert hosts[index].startswith(f"{job['metadata']['name']}-{index}.")
    assert "KERASTUNER_TUNER_ID" not in extra


def test_pod_environment_refuses_without_an_index_and_keeps_an_explicit_tf_config():
    env = {k8s.CLUSTER_ENV: json.dumps({"worker": ["a:1", "b:1"]})}
    with pytest.raises(ValueError, match="JOB_COMPLETION_INDEX"):
        k8s.pod_environment(env)
    with pytest.raises(ValueError, match="outside"):
        k8s.pod_environment({**env, k8s.INDEX_ENV: "2"})
    assert k8s.pod_environment({**env, k8s.INDEX_ENV: "0", "TF_CONFIG": "{}"}) == {}


def test_tuner_specs_chief_service_and_workers():
    c = _config("cluster.tuner_workers=4", "cluster.oracle_port=8111",
                "cluster.worker_restarts=2", "cluster.worker_timeout_s=90").cluster
    objects = k8s.tuner_specs(c, "k1", ARGS, "/data/root/ExampleGen/e", "/data/root/Tuner/u",
                              "/data/root")
    (service,) = _by_kind(objects, "Service")
    chief_job, workers_job = _by_kind(objects, "Job")
    assert service["metadata"]["name"] == "lstm-math-k1-oracle"
    assert service["spec"]["selector"] == {"job-name": chief_job["metadata"]["name"]}
    assert service["spec"]["ports"][0]["port"] == 8111
    chief = chief_job["spec"]["template"]["spec"]["containers"][0]
    assert chief["args"] == ["tune", *ARGS, "--role", "chief", "--oracle", "0.0.0.0:8111",
                             "--examples", "/data/root/ExampleGen/e", "--output",
                             "/data/root/Tuner/u"]
    assert chief["ports"] == [{"containerPort": 8111, "name": "oracle"}]
    spec = workers_job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 4
    assert spec["backoffLimitPerIndex"] == 2 and spec["maxFailedIndexes"] == 0
    worker = spec["template"]["spec"]["containers"][0]
    args = worker["args"]
    assert args[:3] == ["pod", "--", "tune"]
    assert args[args.index("--oracle") + 1] == "lstm-math-k1-oracle.default.svc.cluster.local:8111"
    assert args[args.index("--chief-timeout") + 1] == "90"
    assert args[args.index("--output") + 1] == "/data/root/Tuner/u"  # shared with the chief
    env = {e["name"]: e["value"] for e in worker["env"]}
    ids = [k8s.pod_environment({**env, k8s.INDEX_ENV: str(i)})["KERASTUNER_TUNER_ID"]
           for i in range(4)]
    assert ids == ["worker-0", "worker-1", "worker-2", "worker-3"]  # stable across restarts
    assert all("chief" not in i for i in ids)


def test_object_store_root_mounts_no_volume_and_names_fit_dns():
    c = _config("cluster.train_workers=2", "cluster.name_prefix=a-very-long-prefix-name-here",
                "cluster.gpus=1").cluster
    objects = k8s.training_specs(c, "0123456789abcdef", ARGS, "gs://b/e", "gs://b/t", None,
                                 "gs://b/root")
    pod = _by_kind(objects, "Job")[0]["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    for o in objects:
        assert len(o["metadata"]["name"]) <= 63 - 6  # room for the pod's "-<index>" suffix


def test_bad_cluster_fields_fail_naming_the_field():
    from lstm_math.config import ConfigError

    for override, field in (("cluster.train_workers=0", "cluster.train_workers"),
                            ("cluster.launcher=slurm", "cluster.launcher"),
                            ("cluster.step_timeout_s=0", "cluster.step_timeout_s"),
                            ("cluster.name_prefix=Bad_Name", "cluster.name_prefix"),
                            ("cluster.oracle_port=12345", "cluster.oracle_port")):
        with pytest.raises(ConfigError, match=f"^{field}:"):
            load_config("smoke", [override])


def test_k8s_specs_command_writes_yaml(tmp_path):
    from lstm_math.pipeline import cli

    out = tmp_path / "specs"
    assert cli.main(["k8s-specs", "--config", "smoke", "--set", "cluster.train_workers=2",
                     "--set", "cluster.tuner_workers=2", "--out", str(out)]) == 0
    train = list(yaml.safe_load_all((out / "train.yaml").read_text()))
    tune = list(yaml.safe_load_all((out / "tune.yaml").read_text()))
    assert [o["kind"] for o in train] == ["Service", "Job"]
    assert [o["kind"] for o in tune] == ["Service", "Job", "Job"]
    assert train[1]["spec"]["completions"] == 2


# --------------------------------------------------------------------------------------
# The launcher's watch loop, against a fake API.


class FakeApi:
    def __init__(self, jobs, pods):
        self.jobs, self.pod_list, self.created, self.deleted = jobs, pods, [], []

    def create(self, obj):
        self.created.append((obj["kind"], obj["metadata"]["name"]))

    def delete(self, kind, name):
        self.deleted.append((kind, name))

    def job(self, name):
        return self.jobs.get(name, {"status": {}})

    def pods(self, job_name):
        return self.pod_list.get(job_name, [])

    def log_tail(self, pod, lines=8):
        return "Traceback ...\nMemoryError"


class Ctx:
    def __init__(self, out):
        from lstm_math.pipeline.pipeline import Artifact

        self.output_dir = out
        self.inputs = {"ExampleGen": Artifact("ExampleGen", "/e", "e", {"examples_dir": "/e"}),
                       "Tuner": Artifact("Tuner", "/u", "u", {"best": {"encoder_units": 8}})}


def _launcher(api, *overrides):
    from lstm_math.pipeline.k8s_launcher import KubernetesLauncher

    clock = iter(range(0, 10 ** 6, 10))
    config = _config("cluster.launcher=kubernetes", "cluster.train_workers=2",
                     "cluster.start_timeout_s=60", *overrides)
    return KubernetesLauncher(config, ARGS, api=api, sleep=lambda s: None,
                              clock=lambda: next(clock))


def test_launcher_names_the_failed_training_worker(tmp_path):
    from lstm_math.pipeline.step_errors import WorkerFailed

    out = str(tmp_path / "Trainer" / "fp0123456789")
    os.makedirs(out)
    job = "lstm-math-fp01234567-train"
    failed_pod = {"metadata": {"name": f"{job}-1-x7", "annotations": {k8s.INDEX_ANNOTATION: "1"}},
                  "status": {"phase": "Failed", "containerStatuses": [
                      {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}
    api = FakeApi({job: {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}},
                  {job: [failed_pod]})
    with pytest.raises(WorkerFailed, match=r"training worker 1 \(pod .*-1-x7\) failed: "
                                           r"OOMKilled \(exit code 137\)"):
        _launcher(api).train(Ctx(out))
    assert ("Job", job) in api.created and ("Service", job) in api.created
    assert api.deleted[-2:] == [("Job", job), ("Service", job)]  # cleaned up


def test_launcher_times_out_on_a_pending_pod(tmp_path):
    from lstm_math.pipeline.step_errors import StepTimeout

    out = str(tmp_path / "Trainer" / "fp0123456789")
    os.makedirs(out)
    job = "lstm-math-fp01234567-train"
    pending = {"metadata": {"name": f"{job}-0-a", "annotations": {k8s.INDEX_ANNOTATION: "0"}},
               "status": {"phase": "Pending", "conditions": [
                   {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu."}]}}
    api = FakeApi({}, {job: [pending]})
    with pytest.raises(StepTimeout, match=r"training worker 0 .* still Pending after "
                                          r"cluster.start_timeout_s=60s: Unschedulable"):
        _launcher(api).train(Ctx(out))


def test_launcher_fails_the_tuner_step_when_a_worker_exhausts_its_restarts(tmp_path):
    from lstm_math.pipeline.step_errors import WorkerFailed

    out = str(tmp_path / "Tuner" / "fp0123456789")
    os.makedirs(out)
    workers = "lstm-math-fp01234567-tuner-workers"
    dead = {"metadata": {"name": f"{workers}-1-q", "annotations": {k8s.INDEX_ANNOTATION: "1"}},
            "status": {"phase": "Failed", "containerStatuses": [
                {"state": {"terminated": {"reason": "Error", "exitCode": 3}}}]}}
    api = FakeApi({workers: {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}},
                  {workers: [dead]})
    with pytest.raises(WorkerFailed, match=r"tuner worker-1 \(pod .*-1-q: Error \(exit code 3\)"
                                           r"\) failed beyond cluster.worker_restarts=1"):
        _launcher(api, "cluster.tuner_workers=2").tune(Ctx(out))
    assert ("Service", "lstm-math-fp01234567-oracle") in api.deleted  # cleaned up
