"""The `lstm-math` commands that run on this machine (run, component, generate, train, tune,
serve, predict), as the parser calls them: each checks its arguments first (a mistake is one
line, exit status 2, nothing created), then imports what it runs. The bodies of generate,
train and tune are in ``lstm_math.pipeline.commands``; the server and client in
``lstm_math.serving``.
"""

from __future__ import annotations

import difflib
import os
import socket
import sys

from lstm_math.pipeline.usage import (COMPONENTS, PROG, UsageError, check_input_dir,
                                      check_output_dir, check_path, is_local,
                                      read_local_hparams, tool)


def _load(args):
    """The config the arguments ask for (no TensorFlow): ConfigError names the field."""
    from lstm_math.config import config_from_args

    return config_from_args(args)


def check_roots(args, config, serving: bool = True) -> None:
    """The pipeline root (and, ``serving``: the serving base, for the commands that push)
    are directories, or can be created."""
    check_output_dir("--pipeline-root" if getattr(args, "pipeline_root", None)
                     else "runtime.pipeline_root", config.runtime.pipeline_root)
    if serving:
        check_output_dir("--serving-base" if getattr(args, "serving_base", None)
                         else "pusher.serving_base", config.pusher.serving_base)


def check_warm_start(config) -> None:
    """``trainer.warm_start`` (a local one) names a Keras model archive (a zip holding
    config.json), or a Trainer output directory holding one: checked before anything is
    written (the Trainer finds out only when it loads it)."""
    import zipfile

    from lstm_math.config import MODEL_FILE, ConfigError, warm_start_file

    path = config.trainer.warm_start
    if not path or not is_local(path):
        return
    file = warm_start_file(path)
    where = f"(a Trainer output directory or its {MODEL_FILE})"
    if not os.path.isfile(file):
        raise ConfigError(f"trainer.warm_start: no model at {file} {where}")
    try:
        with zipfile.ZipFile(file) as z:
            ok = "config.json" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        ok = False
    if not ok:
        raise ConfigError(f"trainer.warm_start: {file} is not a Keras model archive (a zip "
                          f"holding config.json); give a Trainer output directory or its "
                          f"{MODEL_FILE}")


def _server_down(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def holds_saved_model(path: str, model_name: str) -> bool:
    """Whether ``lstm-math predict --saved-model`` finds a model at a local ``path`` (what
    ``resolve_saved_model`` accepts), without its warnings about names that are not
    versions."""
    from lstm_math.serving.client import resolve_saved_model

    try:
        resolve_saved_model(path, model_name, quiet=True)
    except FileNotFoundError:
        return False
    return True


def check_predict(args) -> None:
    for flag, port in (("--rest-port", args.rest_port), ("--grpc-port", args.grpc_port)):
        if not 1 <= port <= 65535:
            raise UsageError(f"{flag} {port}: not a port (1..65535)")
    via = args.via or ("saved-model" if getattr(args, "saved_model", None) else "rest")
    if via == "saved-model":
        if not args.saved_model:
            raise UsageError("--via saved-model needs --saved-model DIR (a model base such as "
                             "serving_models, or one version's directory)")
        check_path("--saved-model", args.saved_model, "SavedModel or model base")
        if is_local(args.saved_model) and not holds_saved_model(args.saved_model,
                                                                 args.model_name):
            raise UsageError(f"--saved-model {args.saved_model}: no SavedModel there (looked "
                             f"for saved_model.pb, <version>/saved_model.pb and "
                             f"{args.model_name}/<version>/saved_model.pb; `make run` pushes "
                             f"to serving_models)")
        return
    port = args.rest_port if via == "rest" else args.grpc_port
    if _server_down(args.host, port):
        url = (f"http://{args.host}:{port}/v1/models/{args.model_name}:predict" if via == "rest"
               else f"grpc://{args.host}:{port}")
        raise UsageError(f"no server at {url}: start one in another terminal with "
                         f"`{tool(PROG)} serve --model-base serving_models` (it answers after "
                         f"about 15 s of warm-up), or ask the model without a server: "
                         f"--via saved-model --saved-model serving_models")


def tensorboard_logdir(manifest: dict, root: str) -> str:
    """TensorBoard's arguments: the root's view (one folder per pipeline run, holding
    trainer/train, tuner/trial-01, evaluator); where there is none (a bucket), this run's
    steps by --logdir_spec."""
    if manifest.get("tensorboard"):
        return f"--logdir {manifest['tensorboard']}"
    comps = manifest["components"]
    spec = [f"{name.lower()}:{comps[name]['uri'].rstrip('/')}/logs"
            for name in ("Tuner", "Trainer", "Evaluator") if name in comps]
    return f"--logdir_spec {','.join(spec)}" if spec else f"--logdir {root}"


def _summary(manifest: dict, config) -> str:
    comps = manifest["components"]
    root = config.runtime.pipeline_root
    lines = ["", f"lstm-math run {manifest['run_id']} finished in {manifest.get('seconds', 0):.0f}s"]
    for name, c in comps.items():
        lines.append(f"  {name:<15} {'cached ' if c['cached'] else 'ran    '} "
                     f"{c['seconds']:7.1f}s  {c['uri']}")
    ev = comps.get("Evaluator", {}).get("properties", {})
    if ev:
        m = ev["metrics"]
        lines.append(f"Test exact match: {m['exact_match']:.5f} ({m['wrong']} wrong of "
                     f"{m['count']}); blessed: {ev['blessing']['blessed']}")
    push = comps.get("Pusher", {}).get("properties", {})
    lines.append(f"Run manifest and effective config: {manifest['run_dir']}")
    if manifest.get("tensorboard_run"):
        lines.append(f"TensorBoard run:    {manifest['tensorboard_run']} (beside the root's "
                     "earlier runs)")
    if "Trainer" in comps:
        from lstm_math.config import MODEL_FILE

        lines.append(f"Model (Keras):      {comps['Trainer']['uri']}/{MODEL_FILE}")
    if "Exporter" in comps:
        lines.append(f"SavedModel:         {comps['Exporter']['properties']['saved_model']}")
    if ev:
        lines.append(f"Metrics:            {ev['metrics_file']}")
        if ev.get("report"):
            lines.append(f"Evaluation report:  {ev['report']}")
        for picture in ev.get("pictures", []):
            lines.append(f"Error map / plots:  {picture}")
    if push.get("pushed"):
        lines.append(f"Pushed:             {push['path']} (version {push['version']})")
    elif push:
        lines.append(f"Not pushed: {push.get('reason')}")
    cli = tool(PROG)
    lines.append("")
    lines.append("Next (each command works as printed, from this directory):")
    if push.get("pushed"):
        base = config.pusher.serving_base
        lines.append(f"  {cli} predict --via saved-model --saved-model {base} \"31 + 87\"")
        lines.append(f"  {tool('saved_model_cli')} show --dir {push['path']} --tag_set serve "
                     "--signature_def serving_default")
        lines.append(f"  {cli} serve --model-base {base}   # own terminal; REST :8501 "
                     "after ~15 s warm-up")
        lines.append(f"  {cli} predict \"31 + 87\"   # asks that server")
    lines.append(f"  {tool('tensorboard')} {tensorboard_logdir(manifest, root)}   "
                 "# own terminal; http://localhost:6006")
    activate = os.path.join(os.path.dirname(sys.executable), "activate")
    if cli != PROG and os.path.exists(activate):
        rel = os.path.relpath(activate)
        lines.append(f"(Or `source {activate if rel.startswith('..') else rel}` once per "
                     "shell, then type `lstm-math` alone.)")
    return "\n".join(lines)


def cmd_run(args) -> int:
    config = _load(args)
    check_roots(args, config)
    check_warm_start(config)
    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    manifest = LocalRunner(config).run(create_pipeline(config), use_cache=not args.no_cache)
    print(_summary(manifest, config), flush=True)
    return 0


def _missing_upstream(runner, pipeline, name: str) -> str | None:
    """The earliest step that `name` needs and that has no output for this config yet."""
    needed, todo = set(), list(pipeline.node(name).inputs)
    while todo:
        n = todo.pop()
        if n not in needed:
            needed.add(n)
            todo.extend(pipeline.node(n).inputs)
    artifacts = {}
    for node in pipeline.nodes:
        if node.name == name:
            break
        if node.name not in needed:
            continue
        if any(k not in artifacts for k in node.inputs):
            return next(k for k in node.inputs if k not in artifacts)
        cached = runner.load_cached(node.name, runner.fingerprint(pipeline, node.name, artifacts))
        if cached is None:
            return node.name
        artifacts[node.name] = cached
    return None


def _run_first(step: str, root: str) -> str:
    cli = tool(PROG)
    if step == COMPONENTS[0]:
        return (f"run `{cli} run --pipeline-root {root}` first (with the same --config and "
                f"--set), or `{cli} component {step} --pipeline-root {root}`")
    return (f"run `{cli} component {step} --pipeline-root {root}` first (with the same "
            f"--config and --set), or `{cli} run`")


def cmd_component(args) -> int:
    name = args.name
    if name not in COMPONENTS:
        lower = {c.lower(): c for c in COMPONENTS}
        guess = lower.get(name.lower()) or "".join(
            difflib.get_close_matches(name, COMPONENTS, n=1, cutoff=0.5))
        raise UsageError(f"no component {name!r}" + (f"; did you mean {guess}?" if guess else "")
                         + f" (components: {', '.join(COMPONENTS)})")
    check_output_dir("--pipeline-root", args.pipeline_root)  # not a file, nor under one
    if name != COMPONENTS[0] and args.pipeline_root and is_local(args.pipeline_root) \
            and not os.path.isdir(args.pipeline_root):
        raise UsageError(f"--pipeline-root {args.pipeline_root}: no such directory, so {name} "
                         f"has no inputs; " + _run_first(COMPONENTS[0], args.pipeline_root))
    config = _load(args)
    check_roots(args, config, serving=name == "Pusher")
    if name == "Trainer":
        check_warm_start(config)
    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    runner, pipeline = LocalRunner(config), create_pipeline(config)
    root = config.runtime.pipeline_root
    if name != COMPONENTS[0]:
        if is_local(root) and not os.path.isdir(root):
            raise UsageError(f"pipeline root {root}: no such directory, so {name} has no "
                             f"inputs; " + _run_first(COMPONENTS[0], root))
        missing = _missing_upstream(runner, pipeline, name)
        if missing:
            served = (" (nor against the model served now at pusher.serving_base)"
                      if pipeline.node(missing).resolvers else "")
            raise UsageError(f"{name} needs the output of {missing}, which has not run with "
                             f"this config under {root}{served}; " + _run_first(missing, root))
    manifest = runner.run(pipeline, only=[name], use_cache=not args.no_cache)
    print(_summary(manifest, config), flush=True)
    return 0


def cmd_generate(args) -> int:
    config = _load(args)
    check_output_dir("--output", args.output)
    from lstm_math.pipeline import commands

    return commands.generate(config, args.output)


def cmd_train(args) -> int:
    check_input_dir("--examples", args.examples)
    check_path("--hparams", args.hparams, "file")
    config = _load(args)
    check_warm_start(config)
    check_output_dir("--output", args.output)
    read_local_hparams(args.hparams, config)
    from lstm_math.pipeline import commands

    return commands.train(args, config)


def cmd_tune(args) -> int:
    check_input_dir("--examples", args.examples)
    if not args.examples and args.pipeline_root and is_local(args.pipeline_root) \
            and not os.path.isdir(args.pipeline_root):
        raise UsageError(f"--pipeline-root {args.pipeline_root}: no such directory, so no "
                         f"ExampleGen output to tune on; pass --examples DIR, or "
                         + _run_first(COMPONENTS[0], args.pipeline_root))
    config = _load(args)
    if not config.tuner.enabled:
        raise UsageError("tuner.enabled is false: nothing to tune (the Trainer uses "
                         "trainer.model)")
    if args.output:
        check_output_dir("--output", args.output)
    else:
        check_roots(args, config, serving=False)
    if not args.chief_timeout > 0:
        raise UsageError(f"--chief-timeout {args.chief_timeout:g}: must be a positive number "
                         "of seconds")
    from lstm_math.components.tuner import configure_role
    from lstm_math.pipeline import commands

    try:  # the role's addresses and id (commands.tune sets them again, the same way)
        configure_role(args.role, args.oracle, args.tuner_id)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return commands.tune(args, config)


def cmd_serve(args) -> int:
    check_path("--model-base", args.model_base, "directory (`make run` pushes to "
               "serving_models)")
    from lstm_math.serving import server

    return server.run_serve(args)


def cmd_predict(args) -> int:
    check_predict(args)
    from lstm_math.serving import client

    return client.run_predict(args)
