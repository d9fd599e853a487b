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

from lstm_math.pipeline.usage import COMPONENTS, PROG, UsageError, check_path, is_local, tool


def _load(args):
    from lstm_math.config import config_from_args

    return config_from_args(args)


def _server_down(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def check_predict(args) -> None:
    via = args.via or ("saved-model" if getattr(args, "saved_model", None) else "rest")
    if via == "saved-model":
        if not args.saved_model:
            raise UsageError("--via saved-model needs --saved-model DIR (a model base such as "
                             "serving_models, or one version's directory)")
        check_path("--saved-model", args.saved_model, "SavedModel or model base")
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
        lines.append(f"Model (Keras):      {comps['Trainer']['uri']}/model.keras")
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
    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    config = _load(args)
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
    if name != COMPONENTS[0] and args.pipeline_root and is_local(args.pipeline_root) \
            and not os.path.isdir(args.pipeline_root):
        raise UsageError(f"--pipeline-root {args.pipeline_root}: no such directory, so {name} "
                         f"has no inputs; " + _run_first(COMPONENTS[0], args.pipeline_root))
    from lstm_math.pipeline.pipeline import create_pipeline
    from lstm_math.pipeline.runner import LocalRunner

    config = _load(args)
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
    from lstm_math.pipeline import commands

    return commands.generate(_load(args), args.output)


def cmd_train(args) -> int:
    check_path("--examples", args.examples, "directory")
    check_path("--hparams", args.hparams, "file")
    from lstm_math.pipeline import commands

    return commands.train(args)


def cmd_tune(args) -> int:
    check_path("--examples", args.examples, "directory")
    if not args.examples and args.pipeline_root and is_local(args.pipeline_root) \
            and not os.path.isdir(args.pipeline_root):
        raise UsageError(f"--pipeline-root {args.pipeline_root}: no such directory, so no "
                         f"ExampleGen output to tune on; pass --examples DIR, or "
                         + _run_first(COMPONENTS[0], args.pipeline_root))
    from lstm_math.pipeline import commands

    return commands.tune(args, _load(args))


def cmd_serve(args) -> int:
    check_path("--model-base", args.model_base, "directory (`make run` pushes to "
               "serving_models)")
    from lstm_math.serving import server

    return server.run_serve(args)


def cmd_predict(args) -> int:
    check_predict(args)
    from lstm_math.serving import client

    return client.run_predict(args)
