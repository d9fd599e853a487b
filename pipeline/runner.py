"""LocalRunner: executes a Pipeline's nodes in order with caching and a run manifest.

Layout under the pipeline root (a local path or a tf.io.gfile URL):
  <root>/<Component>/<fingerprint>/          the component's outputs
  <root>/<Component>/<fingerprint>/artifact.json   written last: the artifact is complete
  <root>/runs/<run id>/config.yaml           the effective config of the run
  <root>/runs/<run id>/manifest.json         what each component consumed and produced

A node's fingerprint hashes its name, the config sections it reads and its inputs'
fingerprints. A node whose fingerprint already has a complete artifact is not rerun; an
interrupted node reruns into the same directory (the Trainer resumes from its backup).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import time

import tensorflow as tf

from pipeline.config import PipelineConfig, fingerprint_dict
from pipeline.pipeline import Artifact, Context, Pipeline

log = logging.getLogger(__name__)

# Bump when a component's outputs change meaning, so old cached artifacts are not reused.
CODE_VERSION = "2"


def _section(config: PipelineConfig, dotted: str):
    node = config
    for key in dotted.split("."):
        node = getattr(node, key)
    return dataclasses.asdict(node) if dataclasses.is_dataclass(node) else node


class LocalRunner:
    def __init__(self, config: PipelineConfig):
        self.config = config
        self.root = config.runtime.pipeline_root

    def fingerprint(self, pipeline: Pipeline, name: str, upstream: dict) -> str:
        node = pipeline.node(name)
        payload = {
            "component": name,
            "code_version": CODE_VERSION,
            "config": {s: _section(self.config, s) for s in node.config_sections},
            "inputs": {k: upstream[k].fingerprint for k in node.inputs},
            "extra": node.fingerprint_extra(self.config) if node.fingerprint_extra else None,
        }
        return fingerprint_dict(payload)[:16]

    def artifact_path(self, name: str, fingerprint: str) -> str:
        return os.path.join(self.root, name, fingerprint)

    def load_cached(self, name: str, fingerprint: str) -> Artifact | None:
        path = os.path.join(self.artifact_path(name, fingerprint), "artifact.json")
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as f:
            artifact = Artifact.from_json(f.read())
        if name == "Pusher" and artifact.properties.get("pushed"):
            if not tf.io.gfile.exists(artifact.properties["path"]):
                return None  # the pushed version was removed: push again
        return artifact

    def run_node(self, pipeline: Pipeline, name: str, artifacts: dict, use_cache: bool = True):
        node = pipeline.node(name)
        fp = self.fingerprint(pipeline, name, artifacts)
        cached = self.load_cached(name, fp) if use_cache else None
        if cached is not None:
            log.info("%s: cached (inputs and config unchanged) -> %s", name, cached.uri)
            return cached, True, 0.0
        out_dir = self.artifact_path(name, fp)
        tf.io.gfile.makedirs(out_dir)
        log.info("%s: running -> %s", name, out_dir)
        started = time.time()
        properties = node.run(Context(self.config, {k: artifacts[k] for k in node.inputs}, out_dir))
        artifact = Artifact(component=name, uri=out_dir, fingerprint=fp, properties=properties)
        with tf.io.gfile.GFile(os.path.join(out_dir, "artifact.json"), "w") as f:
            f.write(artifact.to_json())
        return artifact, False, time.time() - started

    def run(self, pipeline: Pipeline, only: list[str] | None = None, use_cache: bool = True) -> dict:
        run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        run_dir = os.path.join(self.root, "runs", run_id)
        tf.io.gfile.makedirs(run_dir)
        with tf.io.gfile.GFile(os.path.join(run_dir, "config.yaml"), "w") as f:
            f.write(self.config.to_yaml())
        manifest = {"pipeline": pipeline.name, "run_id": run_id, "run_dir": run_dir,
                    "components": {}}
        artifacts: dict[str, Artifact] = {}
        started = time.time()
        for node in pipeline.nodes:
            if only and node.name not in only:
                # Another step's turn: take this one's latest complete artifact as input.
                if any(k not in artifacts for k in node.inputs):
                    continue  # downstream of a step that has not run: not needed
                fp = self.fingerprint(pipeline, node.name, artifacts)
                cached = self.load_cached(node.name, fp)
                if cached is None:
                    if any(node.name in pipeline.node(o).inputs for o in only):
                        raise RuntimeError(f"{node.name} has not run with this config yet; run it "
                                           f"first (lstm-math component {node.name} ...)")
                    continue
                artifacts[node.name] = cached
                continue
            artifact, was_cached, seconds = self.run_node(pipeline, node.name, artifacts,
                                                          use_cache=use_cache)
            artifacts[node.name] = artifact
            manifest["components"][node.name] = {
                "uri": artifact.uri,
                "fingerprint": artifact.fingerprint,
                "cached": was_cached,
                "seconds": round(seconds, 2),
                "inputs": {k: artifacts[k].uri for k in node.inputs},
                "properties": artifact.properties,
            }
            with tf.io.gfile.GFile(os.path.join(run_dir, "manifest.json"), "w") as f:
                f.write(json.dumps(manifest, indent=2, default=str))
        manifest["seconds"] = round(time.time() - started, 2)
        with tf.io.gfile.GFile(os.path.join(run_dir, "manifest.json"), "w") as f:
            f.write(json.dumps(manifest, indent=2, default=str))
        return manifest
