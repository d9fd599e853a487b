"""The files for the real TensorFlow Serving (serving/deploy/) parse and agree with each other.

models.config is parsed with TF Serving's own ModelServerConfig proto. The batching and
monitoring protos are not shipped in tensorflow-serving-api, so they are rebuilt here with
the field names and numbers of TF Serving's session_bundle_config.proto and
monitoring_config.proto, and the files are parsed with protobuf's text_format: an unknown or
misspelled field fails the parse just as it would in tensorflow_model_server.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from google.protobuf import message_factory
from tensorflow_serving.config import model_server_config_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "serving", "deploy")
K8S = os.path.join(DEPLOY, "k8s")
MODEL_NAME = "lstm_math"
GRPC_PORT, REST_PORT = 8500, 8501


def read(*parts):
    with open(os.path.join(DEPLOY, *parts), encoding="utf-8") as f:
        return f.read()


def _proto_classes():
    """BatchingParameters and MonitoringConfig, as declared by TF Serving."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    f = descriptor_pb2.FileDescriptorProto(name="lstm_math_test/serving_configs.proto",
                                           package="tensorflow.serving", syntax="proto3",
                                           dependency=["google/protobuf/wrappers.proto"])
    T = descriptor_pb2.FieldDescriptorProto
    batching = f.message_type.add(name="BatchingParameters")
    for number, name, kind, type_name, label in [
            (1, "max_batch_size", T.TYPE_MESSAGE, ".google.protobuf.Int64Value", T.LABEL_OPTIONAL),
            (2, "batch_timeout_micros", T.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             T.LABEL_OPTIONAL),
            (3, "max_enqueued_batches", T.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             T.LABEL_OPTIONAL),
            (4, "num_batch_threads", T.TYPE_MESSAGE, ".google.protobuf.Int64Value",
             T.LABEL_OPTIONAL),
            (5, "thread_pool_name", T.TYPE_MESSAGE, ".google.protobuf.StringValue",
             T.LABEL_OPTIONAL),
            (6, "allowed_batch_sizes", T.TYPE_INT64, None, T.LABEL_REPEATED),
            (7, "pad_variable_length_inputs", T.TYPE_BOOL, None, T.LABEL_OPTIONAL)]:
        field = batching.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    prometheus = f.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=T.TYPE_BOOL, label=T.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    monitoring = f.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=T.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=T.LABEL_OPTIONAL)
    pool.Add(f)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")),
            get(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")))


BatchingParameters, MonitoringConfig = _proto_classes()


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(read("docker-compose.yml"))


@pytest.fixture(scope="module")
def k8s():
    docs = {}
    for name in sorted(os.listdir(K8S)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(K8S, name), encoding="utf-8") as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        docs[doc["kind"]] = doc
    return docs


def flags(args):
    out = {}
    for arg in args:
        m = re.fullmatch(r"--([a-z_]+)=(.*)", arg)
        assert m, f"flag not in --name=value form: {arg}"
        out[m.group(1)] = m.group(2)
    return out


def test_models_config_parses_with_tf_serving_proto():
    config = text_format.Parse(read("models.config"),
                               model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    assert model.name == MODEL_NAME
    assert model.base_path == f"/models/{MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2


def test_batching_parameters_parse():
    params = text_format.Parse(read("batching_parameters.txt"), BatchingParameters())
    assert params.max_batch_size.value > 0
    assert params.batch_timeout_micros.value >= 0
    assert params.max_enqueued_batches.value > 0
    assert params.num_batch_threads.value > 0
    with pytest.raises(text_format.ParseError):  # the stand-in proto does reject typos
        text_format.Parse("max_batch_sise { value: 1 }", BatchingParameters())


def test_batching_parameters_match_local_server_defaults():
    from lstm_math.serving import server
    params = text_format.Parse(read("batching_parameters.txt"), BatchingParameters())
    assert params.max_batch_size.value == server.DEFAULT_MAX_BATCH_SIZE
    # a full batch is exactly the largest bucket the XLA decoder is compiled (and warmed) for
    from lstm_math.config import load_config
    from lstm_math.serving.contract import JIT_BATCH_BUCKETS
    assert server.DEFAULT_MAX_BATCH_SIZE == JIT_BATCH_BUCKETS[-1]
    assert server.DEFAULT_MAX_BATCH_SIZE in load_config("default").exporter.warmup_batch_sizes
    assert params.batch_timeout_micros.value == server.DEFAULT_BATCH_TIMEOUT_MICROS


def test_monitoring_config_parses():
    config = text_format.Parse(read("monitoring.config"), MonitoringConfig())
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_docker_compose(compose):
    [service] = compose["services"].values()
    assert service["image"].split(":-")[-1].startswith("tensorflow/serving")
    ports = {int(p.split(":")[-1].strip('"')) for p in service["ports"]}
    assert ports == {GRPC_PORT, REST_PORT}
    mounts = {}
    for volume in service["volumes"]:
        parts = volume.rsplit(":", 2)
        host, container = (parts[0], parts[1]) if len(parts) == 3 else tuple(parts)
        mounts[container] = host
    assert "SERVING_BASE" in mounts["/models"]
    host_default = re.search(r":-([^}]*)}", mounts["/models"]).group(1)
    # relative to serving/deploy/: the repo's serving_models/, where the Pusher writes
    assert os.path.normpath(os.path.join(DEPLOY, host_default)) == \
        os.path.join(ROOT, "serving_models")
    opts = flags(service["command"])
    config_files = {"model_config_file": "models.config",
                    "batching_parameters_file": "batching_parameters.txt",
                    "monitoring_config_file": "monitoring.config"}
    for flag, local in config_files.items():
        assert mounts[opts[flag]] == f"./{local}"
    assert opts["enable_batching"] in ("true", "1")
    assert int(opts["file_system_poll_wait_seconds"]) >= 1
    # the default export XLA-compiles the decoder and ships warm-up requests: TF Serving
    # refuses XLA without this flag, and replays the warm-up only when enabled
    from lstm_math.config import load_config
    assert load_config("default").exporter.jit_compile is True
    assert opts["xla_cpu_compilation_enabled"] == "true"
    assert opts["enable_model_warmup"] == "true"
    base_path = text_format.Parse(read("models.config"), model_server_config_pb2.
                                  ModelServerConfig()).model_config_list.config[0].base_path
    assert base_path.startswith("/models/")


def test_k8s_manifests(k8s, compose):
    assert {"Deployment", "Service", "PersistentVolumeClaim", "ConfigMap"} <= set(k8s)
    deployment, service, pvc, configmap = (k8s["Deployment"], k8s["Service"],
                                           k8s["PersistentVolumeClaim"], k8s["ConfigMap"])
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [container] = pod["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving")
    assert {p["containerPort"] for p in container["ports"]} == {GRPC_PORT, REST_PORT}
    assert {p["port"] for p in service["spec"]["ports"]} == {GRPC_PORT, REST_PORT}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {GRPC_PORT, REST_PORT}
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{MODEL_NAME}", "port": REST_PORT}

    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == \
        pvc["metadata"]["name"]
    assert volumes[mounts["/config"]]["configMap"]["name"] == configmap["metadata"]["name"]
    # same flags as docker-compose, and the ConfigMap carries the very same files
    [compose_service] = compose["services"].values()
    assert flags(container["args"]) == flags(compose_service["command"])
    for key in ("models.config", "batching_parameters.txt", "monitoring.config"):
        assert configmap["data"][key] == read(key), key
    for flag, value in flags(container["args"]).items():
        if flag.endswith("_file"):
            assert value.startswith("/config/") and value[len("/config/"):] in configmap["data"]


def test_readme_documents_the_deploy_commands():
    with open(os.path.join(ROOT, "serving", "README.md"), encoding="utf-8") as f:
        text = f.read()
    for needle in ("docker compose", "kubectl apply", "/v1/models/lstm_math:predict",
                   "python -m lstm_math.serving.server", "lstm-math predict", "batching_parameters.txt",
                   "/monitoring/prometheus/metrics"):
        assert needle in text, needle
