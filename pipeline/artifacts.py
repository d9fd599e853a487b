"""The artifact store's layout under a pipeline root (a local path or a tf.io.gfile URL).

  <root>/<Component>/<fingerprint>/                 the component's outputs
  <root>/<Component>/<fingerprint>/artifact.json    written last: the artifact is complete
  <root>/runs/<run id>/config.yaml                  the effective config of the run
  <root>/runs/<run id>/manifest.json                what each component consumed and produced
  <root>/tensorboard/<run name>/{tuner,trainer,evaluator}
                                                    TensorBoard's view (local roots): one folder
                                                    per pipeline run, relative symlinks to its
                                                    steps' logs/ (pipeline.tensorboard_view)

Library code for anyone reading the store (no Beam, no component): the runner writes it,
commands and tools read it through the runner or these functions.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

ARTIFACT_FILE = "artifact.json"
RUNS_DIR = "runs"
TENSORBOARD_DIR = "tensorboard"


@dataclasses.dataclass
class Artifact:
    """A component's output: where it is and what it is (TFX's typed artifact, simply)."""

    component: str
    uri: str
    fingerprint: str
    properties: dict

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, default=str)

    @staticmethod
    def from_json(text: str) -> "Artifact":
        return Artifact(**json.loads(text))


def artifact_dir(root: str, component: str, fingerprint: str) -> str:
    return os.path.join(root, component, fingerprint)


def read_artifact(root: str, component: str, fingerprint: str) -> Artifact | None:
    """The complete artifact at that place, or None (absent or interrupted)."""
    return read_artifact_at(artifact_dir(root, component, fingerprint))


def read_artifact_at(uri: str) -> Artifact | None:
    """The complete artifact in directory ``uri`` (any gfile URL), or None when its
    completion marker is not there (absent, or the step has not finished)."""
    path = os.path.join(uri, ARTIFACT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return Artifact.from_json(f.read())


def write_artifact(artifact: Artifact) -> None:
    """Marks ``artifact.uri`` complete (call after everything else is written there)."""
    with tf.io.gfile.GFile(os.path.join(artifact.uri, ARTIFACT_FILE), "w") as f:
        f.write(artifact.to_json())


def list_artifacts(root: str, component: str) -> list[tuple[int, Artifact]]:
    """Every complete artifact of a component: (completion time in ns, artifact)."""
    found = []
    for path in tf.io.gfile.glob(os.path.join(root, component, "*", ARTIFACT_FILE)):
        with tf.io.gfile.GFile(path) as f:
            found.append((tf.io.gfile.stat(path).mtime_nsec, Artifact.from_json(f.read())))
    return found


def run_dir(root: str, run_id: str) -> str:
    return os.path.join(root, RUNS_DIR, run_id)


def tensorboard_dir(root: str) -> str:
    return os.path.join(root, TENSORBOARD_DIR)
