"""The pipeline for Kubeflow Pipelines v2 (and Vertex AI Pipelines): ``lstm-math compile-kfp``.

Each step is a task of the project's image (``cluster.image``) that runs
``lstm-math step NAME --input UPSTREAM=URI ... --output-param uri=... --outputs-json ...``
(``lstm_math.pipeline.kfp_task.run_as_task``): a lightweight Python component whose body
only calls the installed CLI, so the same definition runs on a cluster (KFP launches the
container) and in KFP's local ``SubprocessRunner`` (no Docker), which is how the tests run
it.

* Wiring: every task outputs ``uri`` (its artifact directory under ``pipeline_root``, from
  the runner's layout) and downstream tasks take it as ``--input``; the Evaluator returns
  the blessing (``'true'``/``'false'``, its ``Output``) and
  ``dsl.If(evaluator.outputs['Output'] == 'true')`` gates the Pusher.
* Pipeline parameters: ``config`` (preset or YAML path inside the image), ``overrides``
  (``--set`` list), ``pipeline_root`` and ``serving_base`` (any ``tf.io.gfile`` URL, or a path
  on the PVC ``cluster.volume_claim`` mounted at ``cluster.mount_path``), ``beam_args`` (the
  ExampleGen's Beam runner options), ``train_workers``, ``tuner_workers``, ``tuner_trials``,
  ``launcher`` (``kubernetes``: the Trainer and Tuner start their workers as Kubernetes Jobs,
  ``lstm_math.pipeline.k8s``; ``local``: in the step's own pod).
* KFP's own caching is off: the steps cache by fingerprint under ``pipeline_root`` already
  (a rerun of an unchanged step is a no-op that reports the same ``uri``).
"""


import os

from kfp import compiler, dsl

from lstm_math.config.cluster import DEFAULT_IMAGE

PIPELINE_NAME = "lstm-math"
STEPS = ("ExampleGen", "DataValidation", "Tuner", "Trainer", "Evaluator", "Exporter",
         "InfraValidator", "Pusher")


def build_pipeline(image: str = DEFAULT_IMAGE, config_name: str = "default",
                   overrides: list | None = None, pipeline_root: str = "/data/artifacts",
                   serving_base: str = "/data/serving_models", train_workers: int = 1,
                   tuner_workers: int = 0, tuner_trials: int = 3, launcher: str = "kubernetes",
                   volume_claim: str = "", mount_path: str = "/data"):
    """The ``@dsl.pipeline`` function, its components on ``image``, defaults as given."""
    component = dsl.component(base_image=image, install_kfp_package=False)

    @component
    def example_gen(step: str, config: str, overrides: list, pipeline_root: str,
                    serving_base: str, beam_args: list, uri: dsl.OutputPath(str),
                    outputs_json: dsl.OutputPath(str)):
        from lstm_math.pipeline.kfp_task import run_as_task
        run_as_task(step, config, overrides, pipeline_root, serving_base, {}, uri=uri,
                    outputs_json=outputs_json, beam_args=beam_args)

    @component
    def data_validation(step: str, config: str, overrides: list, pipeline_root: str,
                        serving_base: str, example_gen: str, uri: dsl.OutputPath(str),
                        outputs_json: dsl.OutputPath(str)):
        from lstm_math.pipeline.kfp_task import run_as_task
        run_as_task(step, config, overrides, pipeline_root, serving_base,
                    {"ExampleGen": example_gen}, uri=uri, outputs_json=outputs_json)

    @component
    def tuner(step: str, config: str, overrides: list, pipeline_root: str, serving_base: str,
              example_gen: str, data_validation: str, tuner_workers: int, tuner_trials: int,
              launcher: str, uri: dsl.OutputPath(str), outputs_json: dsl.OutputPath(str)):
        from lstm_math.pipeline.kfp_task import run_as_task
        run_as_task(step, config, overrides + [f"tuner.max_trials={tuner_trials}",
                                               f"cluster.tuner_workers={tuner_workers}",
                                               f"cluster.launcher={launcher}"],
                    pipeline_root, serving_base,
                    {"ExampleGen": example_gen, "DataValidation": data_validation},
                    uri=uri, outputs_json=outputs_json)

    @component
    def trainer(step: str, config: str, overrides: list, pipeline_root: str, serving_base: str,
                example_gen: str, tuner: str, train_workers: int, launcher: str,
                uri: dsl.OutputPath(str), outputs_json: dsl.OutputPath(str)):
        from lstm_math.pipeline.kfp_task import run_as_task
        run_as_task(step, config, overrides + [f"cluster.train_workers={train_workers}",
                                               f"cluster.launcher={launcher}"],
                    pipeline_root, serving_base, {"ExampleGen": example_gen, "Tuner": tuner},
                    uri=uri, outputs_json=outputs_json)

    @component
    def evaluator(step: str, config: str, overrides: list, pipeline_root: str,
                  serving_base: str, example_gen: str, trainer: str, uri: dsl.OutputPath(str),
                  outputs_json: dsl.OutputPath(str)) -> str:
        """Returns the blessing, 'true' or 'false' (the task's ``Output``)."""
        import os
        import tempfile

        from lstm_math.pipeline.kfp_task import run_as_task
        blessed = os.path.join(tempfile.mkdtemp(), "blessed")
        run_as_task(step, config, overrides, pipeline_root, serving_base,
                    {"ExampleGen": example_gen, "Trainer": trainer}, uri=uri,
                    outputs_json=outputs_json, blessed=blessed)
        with open(blessed) as f:
            return f.read()

    @component
    def exporter(step: str, config: str, overrides: list, pipeline_root: str,
                 serving_base: str, trainer: str, evaluator: str, uri: dsl.OutputPath(str),
                 outputs_json: dsl.OutputPath(str)):
        from lstm_math.pipeline.kfp_task import run_as_task
        run_as_task(step, config, overrides, pipeline_root, serving_base,
                    {"Trainer": trainer, "Evaluator": evaluator}, uri=uri,
                    outputs_json=outputs_json)

    @component
    def infra_validator(step: str, config: str, overrides: list, pipeline_root: str,
                        serving_base: str, exporter: str, uri: dsl.OutputPath(str),
                        outputs_json: dsl.OutputPath(str)):
        from lstm_math.pipeline.kfp_task import run_as_task
        run_as_task(step, config, overrides, pipeline_root, serving_base,
                    {"Exporter": exporter}, uri=uri, outputs_json=outputs_json)

    @component
    def pusher(step: str, config: str, overrides: list, pipeline_root: str, serving_base: str,
               exporter: str, evaluator: str, infra_validator: str, uri: dsl.OutputPath(str),
               pushed: dsl.OutputPath(str), version: dsl.OutputPath(str),
               outputs_json: dsl.OutputPath(str)):
        from lstm_math.pipeline.kfp_task import run_as_task
        run_as_task(step, config, overrides, pipeline_root, serving_base,
                    {"Exporter": exporter, "Evaluator": evaluator,
                     "InfraValidator": infra_validator}, uri=uri, outputs_json=outputs_json,
                    pushed=pushed, version=version)

    def _task(t, name: str):
        t.set_display_name(name)
        t.set_caching_options(False)
        if volume_claim:
            from kfp import kubernetes

            kubernetes.mount_pvc(t, pvc_name=volume_claim, mount_path=mount_path)
        return t

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Beam ExampleGen -> DataValidation -> keras-tuner -> "
                              "multi-worker Trainer -> Evaluator (blessing) -> Exporter -> "
                              "InfraValidator -> Pusher, each step `lstm-math step` in the "
                              "project's image")
    def lstm_math_pipeline(config: str = config_name, overrides: list = list(overrides or []),
                           pipeline_root: str = pipeline_root, serving_base: str = serving_base,
                           beam_args: list = [], train_workers: int = train_workers,  # noqa: B006
                           tuner_workers: int = tuner_workers, tuner_trials: int = tuner_trials,
                           launcher: str = launcher):
        common = dict(config=config, overrides=overrides, pipeline_root=pipeline_root,
                      serving_base=serving_base)
        eg = _task(example_gen(step="ExampleGen", beam_args=beam_args, **common), "ExampleGen")
        dv = _task(data_validation(step="DataValidation", example_gen=eg.outputs["uri"],
                                   **common), "DataValidation")
        tu = _task(tuner(step="Tuner", example_gen=eg.outputs["uri"],
                         data_validation=dv.outputs["uri"], tuner_workers=tuner_workers,
                         tuner_trials=tuner_trials, launcher=launcher, **common), "Tuner")
        tr = _task(trainer(step="Trainer", example_gen=eg.outputs["uri"],
                           tuner=tu.outputs["uri"], train_workers=train_workers,
                           launcher=launcher, **common), "Trainer")
        ev = _task(evaluator(step="Evaluator", example_gen=eg.outputs["uri"],
                             trainer=tr.outputs["uri"], **common), "Evaluator")
        ex = _task(exporter(step="Exporter", trainer=tr.outputs["uri"],
                            evaluator=ev.outputs["uri"], **common), "Exporter")
        iv = _task(infra_validator(step="InfraValidator", exporter=ex.outputs["uri"],
                                   **common), "InfraValidator")
        # The blessing is the Evaluator's return value (its ``Output``): KFP's local runner
        # (2.17) resolves only ``Output`` task outputs inside a condition, not named ones.
        with dsl.If(ev.outputs["Output"] == "true", name="blessed"):
            _task(pusher(step="Pusher", exporter=ex.outputs["uri"],
                         evaluator=ev.outputs["uri"], infra_validator=iv.outputs["uri"],
                         **common), "Pusher")

    return lstm_math_pipeline


def compile_pipeline(output: str, config_name: str = "default", overrides: list | None = None,
                     config=None) -> str:
    """Writes the KFP v2 spec (IR YAML) with this config's cluster settings as defaults."""
    from lstm_math.config import load_config

    config = config or load_config(config_name, list(overrides or []))
    c = config.cluster
    root, base = config.runtime.pipeline_root, config.pusher.serving_base
    on_volume = "://" not in root
    if on_volume:  # relative paths live on the volume, not in the pod's working directory
        root = os.path.join(c.mount_path, root)
        if "://" not in base:
            base = os.path.join(c.mount_path, base)
    fn = build_pipeline(image=c.image, config_name=config_name, overrides=overrides,
                        pipeline_root=root, serving_base=base, train_workers=c.train_workers,
                        tuner_workers=c.tuner_workers, tuner_trials=config.tuner.max_trials,
                        launcher="kubernetes" if c.launcher == "local" else c.launcher,
                        volume_claim=c.volume_claim if on_volume else "",
                        mount_path=c.mount_path)
    compiler.Compiler().compile(fn, package_path=output)
    return output
