"""One pipeline step as an orchestrator runs it: ``lstm-math step``.

``lstm-math step NAME --input UPSTREAM=URI ... --outputs-json PATH`` runs one component on
explicit inputs (each URI an upstream artifact directory holding ``artifact.json``) into
``<pipeline_root>/<NAME>/<fingerprint>/``, which ``lstm_math.pipeline.runner.LocalRunner`` chooses
(one place knows the layout), and writes what an orchestrator picks up:

* ``--outputs-json PATH``: ``{"component", "uri", "fingerprint", "cached", "seconds",
  "blessed"?, "pushed"?, "version"?, "metrics"?, "properties"}``;
* ``--output-param KEY=PATH`` (repeatable): one plain value per file, for Kubeflow output
  parameters: ``uri``, ``blessed`` (``true``/``false``), ``pushed``, ``version``, ``json``;
* the same JSON as the last line of stdout.

Exit codes: 0 done; 2 bad flag, config or missing input (nothing created); 1 the step
failed; 4 a worker of a distributed step died (the message names it); 5 a wait ran past its
timeout (``cluster.*_timeout_s``).

Distributed steps (``cluster.launcher`` ``processes``, ``containers`` or ``kubernetes``):
* Trainer with ``cluster.train_workers`` > 1: that many ``lstm-math train`` workers, each
  with its own ``TF_CONFIG`` (MultiWorkerMirroredStrategy); worker 0 writes the model into
  the step's artifact directory. A worker that dies fails the step naming it (the other
  workers are stopped); rerunning the step resumes from the last epoch's checkpoint.
* Tuner with ``cluster.tuner_workers`` > 0: a keras-tuner chief (``lstm-math tune --role
  chief``) and that many workers (``--role worker --tuner-id worker-<i>``) sharing the
  step's artifact directory. A dead worker is restarted with the same id (keras-tuner hands
  it its unfinished trial back) up to ``cluster.worker_restarts`` times, then the step fails
  naming it; a dead chief fails the step.

The launchers (``make_launcher``) are ``pipeline/process_launcher.py``,
``pipeline/container_launcher.py`` and ``pipeline/k8s_launcher.py``; the body of a Kubeflow
Pipelines task is ``pipeline/kfp_task.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os

from lstm_math.pipeline.step_errors import StepUsageError

OUTPUT_PARAMS = ("uri", "blessed", "pushed", "version", "json")


def read_artifact(uri: str):
    from lstm_math.pipeline.artifacts import ARTIFACT_FILE, read_artifact_at

    artifact = read_artifact_at(uri)
    if artifact is None:
        raise StepUsageError(f"no complete artifact at {uri} (no {ARTIFACT_FILE}: the step "
                             "that writes it has not finished)")
    return artifact


def step_outputs(artifact, cached: bool, seconds: float) -> dict:
    """The small JSON an orchestrator reads: paths, metrics, blessing, push."""
    p = artifact.properties
    out = {"component": artifact.component, "uri": artifact.uri,
           "fingerprint": artifact.fingerprint, "cached": cached, "seconds": round(seconds, 2)}
    if "blessing" in p:
        out["blessed"] = bool(p["blessing"].get("blessed"))
        out["metrics"] = {k: v for k, v in p.get("metrics", {}).items()
                          if isinstance(v, (int, float, str, bool))}
    if "pushed" in p:
        out.update(pushed=bool(p["pushed"]), version=p.get("version"), path=p.get("path"),
                   reason=p.get("reason"))
    if "saved_model" in p:
        out["saved_model"] = p["saved_model"]
    if "passed" in p:
        out["passed"] = bool(p["passed"])
    out["properties"] = p
    return out


def _param_value(key: str, outputs: dict) -> str:
    if key == "json":
        return json.dumps(outputs, default=str)
    value = outputs.get(key)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def write_outputs(outputs: dict, outputs_json: str | None, params: dict) -> None:
    import tensorflow as tf

    if outputs_json:
        if os.path.dirname(outputs_json):
            tf.io.gfile.makedirs(os.path.dirname(outputs_json))
        with tf.io.gfile.GFile(outputs_json, "w") as f:
            f.write(json.dumps(outputs, indent=2, default=str))
    for key, path in params.items():
        parent = os.path.dirname(path)
        if parent:
            tf.io.gfile.makedirs(parent)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(_param_value(key, outputs))


def run_step(config, name: str, inputs: dict, config_args: list, use_cache: bool = True,
             log_dir: str | None = None):
    """Runs step ``name``; returns (artifact, cached, seconds)."""
    from lstm_math.pipeline.pipeline import Pipeline, create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    pipeline = create_pipeline(config)
    try:
        node = pipeline.node(name)
    except KeyError as e:
        raise StepUsageError(str(e.args[0])) from None
    unknown = sorted(set(inputs) - set(node.inputs))
    if unknown:
        raise StepUsageError(f"--input {unknown[0]}: {name} does not read it; it reads "
                             f"{', '.join(node.inputs) or 'nothing'}")
    missing = [k for k in node.inputs if k not in inputs]
    if missing:
        raise StepUsageError(f"{name} needs --input {missing[0]}=URI (the upstream artifact "
                             f"directory); it reads {', '.join(node.inputs)}")
    artifacts = {k: read_artifact(inputs[k]) for k in node.inputs}
    c = config.cluster
    if name == "Trainer" and c.train_workers > 1:
        launcher = make_launcher(config, config_args, log_dir)
        if launcher:
            node = dataclasses.replace(node, run=launcher.train)
    elif name == "Tuner" and c.tuner_workers > 0 and config.tuner.enabled:
        launcher = make_launcher(config, config_args, log_dir)
        if launcher:
            node = dataclasses.replace(node, run=launcher.tune)
    pipeline = Pipeline(pipeline.name, [node if n.name == name else n for n in pipeline.nodes])
    return LocalRunner(config).run_node(pipeline, name, artifacts, use_cache=use_cache)


def make_launcher(config, config_args: list, log_dir: str | None = None):
    kind = config.cluster.launcher
    if kind == "processes":
        from lstm_math.pipeline.process_launcher import ProcessLauncher

        return ProcessLauncher(config, config_args, log_dir)
    if kind == "containers":
        from lstm_math.pipeline.container_launcher import ContainerLauncher

        return ContainerLauncher(config, config_args, log_dir)
    if kind == "kubernetes":
        from lstm_math.pipeline.k8s_launcher import KubernetesLauncher

        return KubernetesLauncher(config, config_args)
    return None
