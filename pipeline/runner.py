"""LocalRunner: executes a Pipeline's nodes in order with caching and a run manifest.

The store's layout is pipeline.artifacts. A node's fingerprint hashes its name, the config
values it declares (``Node.config``; without runtime fields), its inputs' fingerprints and
its resolved inputs (``Node.resolvers``), the very values the runner then hands to it. A node whose fingerprint already has a
complete artifact is not rerun; an interrupted node reruns into the same directory (the
Trainer resumes from its backup).

Public API (the ``lstm-math`` commands use only this to find and record artifacts):
  run(pipeline, only=None)           the pipeline, or some of its nodes, with caching
  resolve(pipeline, name)            a node's cached inputs, fingerprint and directory
  latest(name, where)                the newest complete artifact of a component
  complete(name, fingerprint, ...)   records a node's artifact produced outside run()
  scratch_dir(name, key, prefix)     a directory for a component's work outside the cache
  run_component(config, name, dir)   one node's function into a given directory, uncached
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import time
from typing import Callable

import tensorflow as tf

from lstm_math.pipeline import artifacts as store
from lstm_math.pipeline import tensorboard_view
from lstm_math.pipeline.artifacts import Artifact
from lstm_math.components.baseline import describe as describe_baseline
from lstm_math.components.baseline import same as same_baseline
from lstm_math.config import PipelineConfig, fingerprint_dict, fingerprint_value
from lstm_math.pipeline.pipeline import (Context, Pipeline, config_value, create_pipeline,
                                         params_of, pushes_on_blessings, resolve)

log = logging.getLogger(__name__)

# Bump when a component's outputs change meaning, so old cached artifacts are not reused.
# 3: the Tuner's "best" and the Trainer's hparams.json hold {"model", "optimizer"}.
# 4: fingerprints from declared inputs; ExampleGen's coverage is the data's.
CODE_VERSION = "4"


class NotReady(RuntimeError):
    """A node's inputs have not been produced with this config yet."""


@dataclasses.dataclass
class Resolved:
    inputs: dict  # upstream component name -> Artifact
    fingerprint: str
    output_dir: str


class LocalRunner:
    def __init__(self, config: PipelineConfig):
        self.config = config
        self.root = config.runtime.pipeline_root
        self._view: tensorboard_view.RunView | None = None  # this run's TensorBoard folder

    def fingerprint(self, pipeline: Pipeline, name: str, upstream: dict,
                    resolved: dict | None = None) -> str:
        """Hashes what node ``name`` is given: its declared config values, its upstream
        artifacts' fingerprints and its resolved inputs (resolved now unless given)."""
        node = pipeline.node(name)
        payload = {
            "component": name,
            "code_version": CODE_VERSION,
            "config": self.config_payload(node),
            "inputs": {k: upstream[k].fingerprint for k in node.inputs},
        }
        if node.resolvers:
            if resolved is None:
                resolved = self.resolve_inputs(pipeline, name, upstream)
            identities = {k: node.resolvers[k].identity_of(v) for k, v in sorted(resolved.items())}
            # an input that is off (None: no warm start) leaves the fingerprint as it was
            identities = {k: v for k, v in identities.items() if v is not None}
            if identities:
                payload["resolved"] = identities
        return fingerprint_dict(payload)[:16]

    def resolve_inputs(self, pipeline: Pipeline, name: str, upstream: dict) -> dict:
        """Node ``name``'s resolved inputs (``Node.resolvers``), now.

        A baseline that is this very candidate, pushed on an earlier blessing of this node
        with the same inputs and config, is not a new baseline: that blessing's own baseline
        stands (else every run after a push would judge the model against itself, and its
        new export would be pushed again)."""
        node = pipeline.node(name)
        resolved = resolve(node, self.config)
        baseline = resolved.get("baseline")
        if baseline and baseline.get("version") is not None:
            for push in pushes_on_blessings(self.root):
                if not same_baseline(push["pushed"], baseline):
                    continue
                earlier = {**resolved, "baseline": push["judged_against"]}
                if self.fingerprint(pipeline, name, upstream, earlier) == push["evaluator"]:
                    log.info("%s: the served %s is this candidate, pushed on its blessing "
                             "against %s", name, describe_baseline(baseline),
                             describe_baseline(push["judged_against"]))
                    return earlier
        return resolved

    def config_payload(self, node) -> dict:
        """The config a node declares, as its fingerprint holds it (dotted path -> value,
        sections without their runtime fields)."""
        return {path: fingerprint_value(config_value(self.config, path))
                for path in sorted(set(node.config.values()))}

    def artifact_path(self, name: str, fingerprint: str) -> str:
        return store.artifact_dir(self.root, name, fingerprint)

    def load_cached(self, name: str, fingerprint: str) -> Artifact | None:
        artifact = store.read_artifact(self.root, name, fingerprint)
        if artifact is not None and name == "Pusher" and artifact.properties.get("pushed"):
            if not tf.io.gfile.exists(artifact.properties["path"]):
                return None  # the pushed version was removed: push again
        return artifact

    # -- finding and recording artifacts ------------------------------------------------

    def _cached_upstream(self, pipeline: Pipeline, name: str) -> dict:
        """The cached artifacts of the nodes before ``name`` whose inputs are all cached."""
        found: dict[str, Artifact] = {}
        for node in pipeline.nodes:
            if node.name == name:
                break
            if any(k not in found for k in node.inputs):
                continue
            cached = self.load_cached(node.name, self.fingerprint(pipeline, node.name, found))
            if cached is not None:
                found[node.name] = cached
        return found

    def resolve(self, pipeline: Pipeline, name: str) -> Resolved:
        """Node ``name``'s inputs (from the cache), its fingerprint and output directory.
        Raises NotReady naming the first input that this config has not produced."""
        upstream = self._cached_upstream(pipeline, name)
        node = pipeline.node(name)
        missing = [k for k in node.inputs if k not in upstream]
        if missing:
            raise NotReady(f"{missing[0]} has not run with this config yet; run it first "
                           f"(lstm-math component {missing[0]} ...)")
        inputs = {k: upstream[k] for k in node.inputs}
        fp = self.fingerprint(pipeline, name, upstream)
        return Resolved(inputs, fp, self.artifact_path(name, fp))

    def latest(self, name: str, where: Callable[[Artifact], bool] | None = None):
        """The most recently completed artifact of a component (that ``where`` accepts)."""
        found = [(t, a) for t, a in store.list_artifacts(self.root, name)
                 if where is None or where(a)]
        return max(found, key=lambda x: x[0])[1] if found else None

    def complete(self, name: str, fingerprint: str, properties: dict) -> Artifact:
        """Records node ``name``'s artifact, produced in its directory outside run()."""
        artifact = Artifact(component=name, uri=self.artifact_path(name, fingerprint),
                            fingerprint=fingerprint, properties=properties)
        store.write_artifact(artifact)
        self._show_in_tensorboard(name, artifact)
        return artifact

    def _show_in_tensorboard(self, name: str, artifact: Artifact | None,
                             running_in: str | None = None) -> None:
        """``<root>/tensorboard/<run name>/<step>`` -> this artifact's logs, or those of the
        node running in ``running_in`` (watched while it trains); outside ``run()`` (a step
        recorded by ``complete``) a run folder of its own. See pipeline.tensorboard_view."""
        try:
            view = self._view or tensorboard_view.RunView.start(
                self.root, self.config.to_dict(), note=name)
            if view is None:
                return
            if running_in:
                view.show(name, running_in, require_logs=False)
            else:
                view.show(name, artifact.uri if artifact else None)
        except OSError as e:  # a view is a convenience: never fail a run for it
            log.warning("TensorBoard view of %s not updated: %s", name, e)

    def scratch_dir(self, name: str, key: dict, prefix: str = "adhoc") -> str:
        """A directory for ``name``'s work on inputs from outside this config's cache
        (``<root>/<name>/<prefix>-<hash of key>``); never taken for a cached artifact."""
        return os.path.join(self.root, name, f"{prefix}-{fingerprint_dict(key)[:16]}")

    # -- running -----------------------------------------------------------------------

    def run_node(self, pipeline: Pipeline, name: str, artifacts: dict, use_cache: bool = True):
        node = pipeline.node(name)
        resolved = self.resolve_inputs(pipeline, name, artifacts)  # once: fingerprinted = given
        fp = self.fingerprint(pipeline, name, artifacts, resolved)
        cached = self.load_cached(name, fp) if use_cache else None
        if cached is not None:
            log.info("%s: cached (inputs and config unchanged) -> %s", name, cached.uri)
            return cached, True, 0.0
        out_dir = self.artifact_path(name, fp)
        tf.io.gfile.makedirs(out_dir)
        log.info("%s: running -> %s", name, out_dir)
        self._show_in_tensorboard(name, None, running_in=out_dir)
        started = time.time()
        properties = node.run(Context(params_of(node, self.config),
                                      {k: artifacts[k] for k in node.inputs}, out_dir, resolved))
        artifact = Artifact(component=name, uri=out_dir, fingerprint=fp, properties=properties)
        store.write_artifact(artifact)
        return artifact, False, time.time() - started

    def run(self, pipeline: Pipeline, only: list[str] | None = None, use_cache: bool = True) -> dict:
        for node in pipeline.nodes:  # a bad outside input (trainer.warm_start) fails before
            if not only or node.name in only:  # anything is written
                resolve(node, self.config, at_start=True)
        run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        run_dir = store.run_dir(self.root, run_id)
        tf.io.gfile.makedirs(run_dir)
        with tf.io.gfile.GFile(os.path.join(run_dir, "config.yaml"), "w") as f:
            f.write(self.config.to_yaml())
        manifest = {"pipeline": pipeline.name, "run_id": run_id, "run_dir": run_dir,
                    "components": {}}
        artifacts: dict[str, Artifact] = {}
        started = time.time()
        self._view = tensorboard_view.RunView.start(self.root, self.config.to_dict(),
                                                    note="+".join(only) if only else None)
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
                self._show_in_tensorboard(node.name, cached)
                continue
            try:
                artifact, was_cached, seconds = self.run_node(pipeline, node.name, artifacts,
                                                              use_cache=use_cache)
            except Exception as e:
                manifest["failed"] = {"component": node.name, "error": str(e)}
                with tf.io.gfile.GFile(os.path.join(run_dir, "manifest.json"), "w") as f:
                    f.write(json.dumps(manifest, indent=2, default=str))
                raise
            artifacts[node.name] = artifact
            self._show_in_tensorboard(node.name, artifact)
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
        view = store.tensorboard_dir(self.root)
        if self._view is not None and os.path.isdir(self._view.dir):
            manifest["tensorboard"] = view
            manifest["tensorboard_run"] = self._view.name
        self._view = None
        with tf.io.gfile.GFile(os.path.join(run_dir, "manifest.json"), "w") as f:
            f.write(json.dumps(manifest, indent=2, default=str))
        return manifest


def run_component(config: PipelineConfig, name: str, output_dir: str,
                  inputs: dict | None = None) -> dict:
    """Runs one node's function (the same one the pipeline runs) into ``output_dir``, outside
    the cache; ``inputs`` are its upstream artifacts. Returns the artifact's properties."""
    node = create_pipeline(config).node(name)
    inputs = inputs or {}
    missing = [k for k in node.inputs if k not in inputs]
    if missing:
        raise ValueError(f"{name} needs the artifacts of {', '.join(missing)}")
    tf.io.gfile.makedirs(output_dir)
    return node.run(Context(params_of(node, config), {k: inputs[k] for k in node.inputs},
                            output_dir, resolve(node, config)))


def external_artifact(component: str, uri: str, properties: dict) -> Artifact:
    """An artifact made outside the store (a directory given on the command line)."""
    return Artifact(component=component, uri=uri, fingerprint="", properties=properties)
