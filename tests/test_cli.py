"""The command line a new user meets: fast quiet help, one-line mistakes, printed commands.

Most checks run `lstm-math` in a subprocess that fails before importing TensorFlow, so they
take a fraction of a second each; the printed-commands check reuses the session's smoke run.
"""

import json
import os
import shlex
import socket
import subprocess
import sys

import pytest

from lstm_math.pipeline import cli, terminal, usage

from tests.helpers import REPO, cli_in_fresh_python


def _cli(args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "lstm_math.pipeline.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=env or dict(os.environ, PYTHONPATH=REPO))


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, n), path)
                  for d, dirs, files in os.walk(path) for n in dirs + files)


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["component", "--help"],
                                  ["generate", "--help"], ["train", "--help"],
                                  ["tune", "--help"]])
def test_help_is_fast_quiet_and_imports_nothing_heavy(argv, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc, rc, heavy = cli_in_fresh_python(argv, cwd=tmp_path, env=env, timeout=60)
    assert rc == 0 and proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no absl, oneDNN, CUDA or apitools lines
    assert heavy == []
    assert "``" not in proc.stdout
    if argv[0] in ("run", "component", "generate", "train", "tune"):
        assert "presets" in proc.stdout and "smoke" in proc.stdout
        assert "log debug messages" in proc.stdout  # -v has help
    if argv[0] in cli.BEAM_COMMANDS:
        assert "--beam-arg" in proc.stdout


def test_every_option_has_help_text():
    parser = cli.build_parser()  # every command, serve and predict included
    subparsers = parser._subparsers._group_actions[0].choices
    assert set(subparsers) == set(cli.COMMANDS)
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            assert "``" not in action.help


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MISTAKES = [
    # (argv, text the one line must contain); ROOT, OUT, MISSING are paths under tmp_path.
    (["generate", "--pipline-root=ROOT", "--output", "OUT"], "unknown option --pipline-root"),
    (["run", "--pipline-root=ROOT"],
     "unknown option --pipline-root; did you mean --pipeline-root?"),
    (["run", "--no-cach", "--pipeline-root", "ROOT"], "did you mean --no-cache?"),
    (["run", "--direct_num_workers=2"], "--beam-arg=--direct_num_workers=2 or after --beam"),
    (["run", "--beam-arg=--runer=DirectRunner", "--pipeline-root", "ROOT"],
     "Beam has no option --runer; did you mean --runner?"),
    (["component", "Trainr", "--pipeline-root", "ROOT"],
     "no component 'Trainr'; did you mean Trainer?"),
    (["component", "Trainer", "--pipeline-root", "MISSING"],
     "--pipeline-root MISSING: no such directory, so Trainer has no inputs; run `"),
    (["tune", "--pipeline-root", "MISSING"], "--pipeline-root MISSING: no such directory"),
    (["train", "--examples", "MISSING", "--output", "OUT"],
     "--examples MISSING: no such directory"),
    (["predict", "--rest-port", "PORT", "31 + 87"],
     "no server at http://127.0.0.1:PORT/v1/models/lstm_math:predict: start one in another "
     "terminal with `"),
    (["predict", "--saved-model", "MISSING", "31 + 87"], "--saved-model MISSING: no such"),
    (["serve", "--model-base", "MISSING"], "--model-base MISSING: no such directory"),
    (["trian"], "no command 'trian'; did you mean train?"),
    (["run", "--config", "smoke", "--set", "trainer.warm_start=MISSING", "--pipeline-root",
      "ROOT", "--serving-base", "OUT"],
     "bad config: trainer.warm_start: no model at MISSING/model.keras"),
]


@pytest.mark.parametrize("argv,expected", MISTAKES, ids=[" ".join(m[0][:2]) for m in MISTAKES])
def test_ordinary_mistakes_say_what_to_do_in_one_line_and_create_nothing(argv, expected, tmp_path):
    port = str(_free_port())
    names = {"ROOT": str(tmp_path / "root"), "OUT": str(tmp_path / "out"),
             "MISSING": str(tmp_path / "missing"), "PORT": port}

    def fill(text):
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    work = tmp_path / "cwd"
    work.mkdir()
    proc = _cli([fill(a) for a in argv], cwd=work)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lstm-math")
    assert fill(expected) in lines[0]
    assert proc.stdout == ""
    assert _tree(tmp_path) == ["cwd"]  # no artifacts/, no root, no run directory
    if argv[0] == "predict" and "--rest-port" in argv:
        assert "serve --model-base serving_models" in lines[0]
        assert "--via saved-model --saved-model serving_models" in lines[0]


# Mistakes that need something on disk first. Setup entries, relative to the command's
# working directory: "name/" a directory, "name" an empty file, "name=TEXT" a file.
BAD_KEY = "k" * 34  # with the default prefix: lstm-math-<key>-tuner-workers + "-<index>" > 63
ON_DISK_MISTAKES = [
    # R5: the pipeline root / serving base is a file, under a file, or cannot be created
    (["afile"], ["run", "--config", "smoke", "--pipeline-root", "afile"],
     "lstm-math run: error: --pipeline-root afile: exists and is not a directory"),
    (["afile"], ["run", "--config", "smoke", "--pipeline-root", "afile/sub/root"],
     "--pipeline-root afile/sub/root: cannot be created: "),
    ([], ["run", "--config", "smoke", "--pipeline-root", "/proc/nope"],
     "--pipeline-root /proc/nope: cannot be created: no directory can be made in /proc"),
    (["afile"], ["run", "--config", "smoke", "--serving-base", "afile"],
     "--serving-base afile: exists and is not a directory"),
    (["afile"], ["component", "ExampleGen", "--config", "smoke", "--pipeline-root", "afile"],
     "--pipeline-root afile: exists and is not a directory"),
    # R6: the Beam runner, checked as Beam resolves it
    ([], ["run", "--config", "smoke", "--beam", "--runner=NoSuchRunner"],
     "Beam option --runner=NoSuchRunner: no such runner"),
    ([], ["run", "--config", "smoke",
          "--beam-arg=--runner=apache_beam.runners.direct.direct_runner.NoRunner"],
     "apache_beam.runners.direct.direct_runner has no class NoRunner"),
    # R7: output paths
    (["f"], ["generate", "--config", "smoke", "--output", "f"],
     "lstm-math generate: error: --output f: exists and is not a directory"),
    (["ex/", "f"], ["train", "--config", "smoke", "--examples", "ex", "--output", "f"],
     "lstm-math train: error: --output f: exists and is not a directory"),
    (["ex/", "f"], ["tune", "--config", "smoke", "--examples", "ex", "--output", "f"],
     "lstm-math tune: error: --output f: exists and is not a directory"),
    (["f"], ["k8s-specs", "--config", "smoke", "--out", "f"],
     "lstm-math k8s-specs: error: --out f: exists and is not a directory"),
    ([], ["compile-kfp", "--config", "smoke", "missing/out.yaml"],
     "lstm-math compile-kfp: error: OUTPUT missing/out.yaml: no such directory missing"),
    (["d/"], ["compile-kfp", "--config", "smoke", "d"],
     "OUTPUT d: the spec is YAML; give a file name ending in .yaml"),
    (["d.yaml/"], ["compile-kfp", "--config", "smoke", "d.yaml"],
     "OUTPUT d.yaml: is a directory"),
    (["f"], ["step", "ExampleGen", "--config", "smoke", "--pipeline-root", "root",
             "--outputs-json", "f/out.json"], "--outputs-json f: exists and is not a directory"),
    # R8: --hparams read and validated as the config's trainer.model / trainer.optimizer
    (["ex/", "h/"], ["train", "--config", "smoke", "--examples", "ex", "--output", "o",
                     "--hparams", "h"], "lstm-math train: error: --hparams h: is a directory"),
    (["ex/", "h=not json"], ["train", "--config", "smoke", "--examples", "ex", "--output", "o",
                             "--hparams", "h"], "--hparams h: not JSON"),
    (["ex/", "h=[1]"], ["train", "--config", "smoke", "--examples", "ex", "--output", "o",
                        "--hparams", "h"], "--hparams h: expected a JSON object"),
    (["ex/", 'h={"model": {"encoder_units": -1}}'],
     ["train", "--config", "smoke", "--examples", "ex", "--output", "o", "--hparams", "h"],
     "--hparams h: model.encoder_units: must be positive"),
    (["ex/", 'h={"model": {}, "optimizer": {"learning_rate": "fast"}}'],
     ["train", "--config", "smoke", "--examples", "ex", "--output", "o", "--hparams", "h"],
     "--hparams h: optimizer.learning_rate: expected a number"),
    (["ex/", "bad.keras=not a model"],
     ["train", "--config", "smoke", "--examples", "ex", "--output", "o",
      "--set", "trainer.warm_start=bad.keras"],
     "bad config: trainer.warm_start: CWD/bad.keras is not a Keras model archive"),
    (["bad.keras=not a model"],
     ["run", "--config", "smoke", "--set", "trainer.warm_start=bad.keras"],
     "lstm-math run: error: bad config: trainer.warm_start: CWD/bad.keras is not a Keras"),
    # R9, R10: --examples without ExampleGen output: one line, train and tune alike
    (["ex/"], ["train", "--config", "smoke", "--examples", "ex", "--output", "o"],
     "lstm-math train: error: --examples: no ExampleGen output under ex: stats.json is missing"),
    (["ex"], ["train", "--config", "smoke", "--examples", "ex", "--output", "o"],
     "lstm-math train: error: --examples ex: not a directory"),
    (["ex/"], ["tune", "--config", "smoke", "--examples", "ex"],
     "lstm-math tune: error: --examples: no ExampleGen output under ex: stats.json is missing"),
    # R11: worker counts, by argparse
    ([], ["rehearse", "--config", "smoke", "--train-workers", "0"],
     "lstm-math rehearse: error: argument --train-workers: must be in 1..256, got 0"),
    ([], ["rehearse", "--config", "smoke", "--tuner-workers", "-1"],
     "argument --tuner-workers: must be in 0..256, got -1"),
    # R12: --key makes Kubernetes names
    ([], ["k8s-specs", "--config", "smoke", "--out", "o", "--key", "BAD KEY!"],
     "lstm-math k8s-specs: error: --key 'BAD KEY!': Kubernetes names take lowercase letters"),
    ([], ["k8s-specs", "--config", "smoke", "--out", "o", "--key", BAD_KEY],
     f"--key '{BAD_KEY}': too long: 'lstm-math-{BAD_KEY}-tuner-workers' would have 58"),
    # R14: predict's SavedModel and ports
    (["f"], ["predict", "--via", "saved-model", "--saved-model", "f", "1 + 2"],
     "lstm-math predict: error: --saved-model f: no SavedModel there"),
    (["m/"], ["predict", "--via", "saved-model", "--saved-model", "m", "1 + 2"],
     "lstm-math predict: error: --saved-model m: no SavedModel there"),
    (["m/lstm_math/1/"], ["predict", "--saved-model", "m/lstm_math/1", "1 + 2"],
     "--saved-model m/lstm_math/1: no SavedModel there"),
    ([], ["predict", "--rest-port", "70000", "1 + 2"],
     "lstm-math predict: error: --rest-port 70000: not a port (1..65535)"),
    ([], ["predict", "--via", "grpc", "--grpc-port", "-1", "1 + 2"],
     "--grpc-port -1: not a port (1..65535)"),
    # tune, step and pod report mistakes as every command does (not as log lines)
    (["ex/"], ["tune", "--config", "smoke", "--examples", "ex", "--role", "worker"],
     "lstm-math tune: error: --role worker needs the chief's address: --oracle HOST:PORT"),
    (["ex/"], ["tune", "--config", "smoke", "--examples", "ex", "--set",
               "tuner.enabled=false"], "lstm-math tune: error: tuner.enabled is false"),
    ([], ["step", "Trainer", "--config", "smoke", "--pipeline-root", "root"],
     "lstm-math step: error: Trainer needs --input ExampleGen=URI"),
    ([], ["pod"], "lstm-math pod: error: give the command after --"),
]


@pytest.mark.parametrize("setup,argv,expected", ON_DISK_MISTAKES,
                         ids=[" ".join(m[1][:2] + m[1][-2:]) for m in ON_DISK_MISTAKES])
def test_bad_paths_and_values_fail_fast_in_one_line_and_create_nothing(setup, argv, expected,
                                                                       tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    for entry in setup:
        name, _, text = entry.partition("=")
        path = work / name
        if name.endswith("/"):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    before = _tree(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KERASTUNER_", "LSTM_MATH_", "JOB_COMPLETION"))}
    proc = _cli(argv, cwd=work, env=dict(env, PYTHONPATH=REPO))
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert expected.replace("CWD", str(work)) in lines[0], lines[0]
    assert lines[0].startswith(f"lstm-math {argv[0]}: error: "), lines[0]
    assert proc.stdout == ""
    assert _tree(tmp_path) == before  # no artifacts/, no output, no probe left behind


EARLY_MISTAKES = [
    ([], ["run", "--config", "smoke", "--set", "trainer.epochs=0"]),
    ([], ["component", "Trainer", "--config", "smoke", "--set", "trainer.epochs=0"]),
    ([], ["generate", "--config", "smoke", "--set", "trainer.epochs=0", "--output", "o"]),
    (["ex/"], ["train", "--config", "smoke", "--set", "trainer.epochs=0", "--examples", "ex",
               "--output", "o"]),
    ([], ["tune", "--config", "smoke", "--set", "trainer.epochs=0", "--examples", "."]),
    (["afile"], ["run", "--config", "smoke", "--pipeline-root", "afile"]),
    (["ex/", "h=[]"], ["train", "--config", "smoke", "--examples", "ex", "--output", "o",
                       "--hparams", "h"]),
    (["m/"], ["predict", "--saved-model", "m", "1 + 2"]),
]


@pytest.mark.parametrize("setup,argv", EARLY_MISTAKES,
                         ids=[" ".join(m[1][:2] + m[1][-2:]) for m in EARLY_MISTAKES])
def test_config_and_path_mistakes_are_found_before_tensorflow_is_imported(setup, argv, tmp_path):
    for entry in setup:
        name, _, text = entry.partition("=")
        (tmp_path / name).mkdir() if name.endswith("/") else (tmp_path / name).write_text(text)
    proc, rc, heavy = cli_in_fresh_python(argv, cwd=tmp_path)
    assert (rc, heavy) == (2, []), proc.stdout + proc.stderr[-3000:]
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_beam_runner_names_resolve_as_beam_resolves_them():
    for name in ("DirectRunner", "direct", "portable", "PortableRunner", "prismrunner",
                 "apache_beam.runners.direct.direct_runner.DirectRunner"):
        usage.check_beam_runner(name)
    for name, message in (("Direkt", "no such runner"), ("no_such.module.Runner",
                                                          "cannot import no_such.module"),
                          ("apache_beam.runners.direct.direct_runner.Nope", "has no class")):
        with pytest.raises(usage.UsageError, match=message):
            usage.check_beam_runner(name)


def test_missing_upstream_step_is_one_line_and_creates_no_run(tmp_path):
    """A pipeline root that exists but holds no ExampleGen output for this config."""
    root = tmp_path / "root"
    root.mkdir()
    proc = _cli(["component", "Trainer", "--config", "smoke", "--pipeline-root", str(root)],
                cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after TensorFlow's own import lines
    assert last.startswith("lstm-math component: error: Trainer needs the output of "
                           "ExampleGen, which has not run with this config under"), last
    assert os.listdir(root) == []


def test_beam_options_are_checked_against_beam():
    usage.validate_beam_args(["--runner=PortableRunner", "--job_endpoint=localhost:8099",
                            "--environment_type=EXTERNAL", "--environment_config=localhost:50000",
                            "--direct_num_workers=2", "--direct_running_mode=multi_processing",
                            "--flink_master=host:8081", "--flink_version=1.19",
                            "--project=p", "--region=r", "--temp_location=gs://b/t",
                            "--setup_file=./setup.py", "--num_workers=8"])
    for bad, message in ((["--runer=X"], "did you mean --runner?"),
                         (["--direct_running_mode=fast"], "invalid choice"),
                         (["runner=X"], "should look like --name=value")):
        with pytest.raises(usage.UsageError, match=message.replace("?", r"\?")):
            usage.validate_beam_args(bad)
    assert cli._split_argv(["run", "--beam-arg", "--runner=X", "--beam", "--a=1", "--beam",
                            "--b=2"]) == (["run", "--beam-arg=--runner=X"], ["--a=1", "--b=2"])


def test_component_names_match_the_pipeline(smoke_run):
    assert tuple(smoke_run["manifest"]["components"]) == usage.COMPONENTS


def test_the_summary_commands_work_as_printed_in_a_fresh_shell(smoke_run):
    out = smoke_run["stdout"]
    assert "Next (each command works as printed" in out
    commands = [line.split("   #")[0].strip() for line in out.split("Next (", 1)[1].splitlines()[1:]
                if line.startswith("  ")]
    assert len(commands) == 5, out
    # A fresh shell: the virtual environment is not on PATH.
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": REPO,
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    ran = 0
    for command in commands:
        argv = shlex.split(command)
        assert os.access(argv[0] if os.path.isabs(argv[0]) else os.path.join(REPO, argv[0]),
                         os.X_OK), command
        if "--via saved-model" in command or argv[1:2] == ["show"]:
            proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=300)
            # 3: answered, but the barely trained smoke model may not trust its answer
            assert proc.returncode in (0, 3), f"{command}\n{proc.stderr[-3000:]}"
            assert ("31 + 87 =" in proc.stdout) if "predict" in command else (
                "equation" in proc.stdout)
            ran += 1
    assert ran == 2


def test_readme_figures_come_from_a_manifest(tmp_path):
    import json

    run_dir = tmp_path / "root" / "runs" / "20261128T101500000000Z"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: lstm_math\n")
    comps = {name: {"cached": False, "seconds": 1.5, "properties": {}} for name in usage.COMPONENTS}
    comps["Evaluator"]["properties"] = {
        "metrics": {"exact_match": 0.99985, "wrong": 6, "count": 39946,
                    "exhaustive": {"exact_match": 0.999994, "wrong": 6, "count": 1000000}},
        "blessing": {"blessed": True}}
    comps["Pusher"]["properties"] = {"pushed": True, "version": 1}
    (run_dir / "manifest.json").write_text(json.dumps(
        {"run_id": run_dir.name, "run_dir": str(run_dir), "components": comps, "seconds": 358.2}))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- figures:start -->\ntyped\n<!-- figures:end -->\nrest\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "readme_figures.py"),
                           "--pipeline-root", str(tmp_path / "root"), "--hardware", "2-core CPU",
                           "--write", str(readme)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert "typed" not in text and text.endswith("<!-- figures:end -->\nrest\n")
    assert "Measured on 2026-11-28 on 2-core CPU" in text
    assert "| Trainer | 1.5 s |" in text and "| **whole run** | **358 s** |" in text
    assert "Test exact match 0.99985 (6 wrong of 39,946)." in text
    assert "(1,000,000): exact match 0.99999 (6 wrong)" in text
    assert "Pushed as version 1." in text


def test_predict_says_unsure_in_its_output_and_exit_status_and_keeps_tf_quiet(tmp_path):
    """Through the entry point's code path (`python -m lstm_math.pipeline.cli`), in a fresh
    process without TF_CPP_MIN_LOG_LEVEL: a trusted answer is printed plain, an
    untrusted one with '?' and its confidence against the model's threshold, the exit
    status is 3; TensorFlow's start-up lines stay off the terminal."""
    from lstm_math.components.exporter import export_saved_model
    from tests.helpers import OracleModel, make_coverage

    coverage = make_coverage(max_input_length=5, max_result_length=3, reverse_output=True)
    base = tmp_path / "models"
    export_saved_model(OracleModel(coverage), coverage,  # wrong on '7 + b', unsure there
                       {"confidence": {"+": {"threshold": 0.9}}}, str(base / "lstm_math" / "1"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO
    args = ["predict", "--via", "saved-model", "--saved-model", str(base)]
    proc = _cli(args + ["1 + 9", "7 + 3"], tmp_path, env)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["1 + 9 = 10",
                                        "7 + 3 = 110?  (unsure: confidence 0.130 < 0.900)"]
    for noise in ("cuInit", "cudart", "oneDNN", "absl::InitializeLog", "cuda_"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    # every level of TensorFlow's native log on (the user's own setting): still filtered
    proc = _cli(args + ["1 + 9", "1 + x"], tmp_path, dict(env, TF_CPP_MIN_LOG_LEVEL="0"))
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "1 + 9 = 10"
    for noise in ("cuInit", "cudart", "oneDNN", "absl::InitializeLog", "cuda_",
                  "I0000", "To enable the following instructions"):
        assert noise not in proc.stderr, proc.stderr[-3000:]


def test_tensorflow_start_up_lines_are_kept_only_with_verbose(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    terminal.quiet_tensorflow(["predict", "-v", "1 + 2"])
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    terminal.quiet_tensorflow(["serve", "--model-base", "x"])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own setting wins
    terminal.quiet_tensorflow(["run"])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_pod_hands_its_terminal_to_the_command_it_runs(tmp_path):
    """`lstm-math pod -- CMD` (what every training and tuning container runs) execs CMD in its
    place: CMD's log lines and errors reach the container's stderr, and its exit status is the
    container's (a filter left on stderr by `pod` swallowed them and exited 120)."""
    from lstm_math.pipeline import k8s

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
    env.update({"PYTHONPATH": REPO, k8s.INDEX_ENV: "1",
                k8s.CLUSTER_ENV: json.dumps({"worker": ["w-0:2222", "w-1:2222"]})})
    proc = _cli(["pod", "--", "run", "--config", "no-such-preset"], tmp_path, env)
    assert proc.returncode == 2, proc.stderr
    assert "pod: TF_CONFIG=" in proc.stderr
    assert ("lstm-math run: error: bad config: --config 'no-such-preset': no such file"
            in proc.stderr), proc.stderr
    assert os.listdir(tmp_path) == []
