"""The container image's Dockerfile, checked without a Docker engine: it parses, its base and
user are right, dependencies are installed before the code is copied (cache), every file it
copies exists and is not excluded by .dockerignore; slow: its two install steps work in a
clean virtual environment, and the GPU variant's requirements resolve. The image is built
and run for real in tests/test_containers.py (podman)."""

import fnmatch
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
                "LABEL", "EXPOSE"}


def parse(path):
    """(instruction, arguments) per logical line: continuations joined, comments dropped."""
    out, buf = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.rstrip().endswith("\\"):
                buf += line.rstrip()[:-1] + " "
                continue
            buf += line
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    assert not buf, "dangling line continuation"
    return out


@pytest.fixture(scope="module")
def steps():
    return parse(os.path.join(REPO, "Dockerfile"))


def _dockerignored(rel: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    ignored = False
    with open(os.path.join(REPO, ".dockerignore")) as f:
        for line in f:
            pat = line.strip()
            if not pat or pat.startswith("#"):
                continue
            neg = pat.startswith("!")
            pat = pat.lstrip("!").rstrip("/")
            pat = pat.replace("**/", "")
            parts = rel.split("/")
            hit = any(fnmatch.fnmatch("/".join(parts[:i + 1]), pat) for i in range(len(parts))) \
                or fnmatch.fnmatch(parts[-1], pat)
            if hit:
                ignored = not neg
    return ignored


def test_parses_with_known_instructions(steps):
    assert steps[0][0] in ("ARG", "FROM")
    assert {s for s, _ in steps} <= INSTRUCTIONS
    assert [a for s, a in steps if s == "FROM"] == ["${PYTHON_IMAGE}"]
    args = dict(a.split("=", 1) for s, a in steps if s == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11")  # setup.py: python 3.10-3.12
    assert args["VARIANT"] == "cpu" and "kfp" in args["EXTRAS"].split(",")
    run = " ".join(a for s, a in steps if s == "RUN")
    assert 'if [ "${VARIANT}" = "gpu" ]' in run and "tensorflow[and-cuda]" in run


def test_runs_as_non_root(steps):
    users = [a for s, a in steps if s == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [s for s, _ in steps].index("USER") > max(
        i for i, (s, _) in enumerate(steps) if s == "RUN")


def test_dependencies_are_installed_before_the_code_is_copied(steps):
    copies = [(i, a) for i, (s, a) in enumerate(steps) if s == "COPY"]
    first_code = min(i for i, a in copies if a.split()[0] != "setup.py")
    deps = [i for i, (s, a) in enumerate(steps) if s == "RUN" and 'pip install ".[' in a]
    assert deps and deps[0] < first_code
    assert copies[0][1].split()[0] == "setup.py"
    code_install = [i for i, (s, a) in enumerate(steps) if s == "RUN" and "--no-deps" in a]
    assert code_install and code_install[0] > first_code


def test_every_copied_path_exists_and_is_sent_to_the_daemon(steps):
    for s, a in steps:
        if s != "COPY":
            continue
        *sources, _dest = a.split()
        for src in sources:
            assert os.path.exists(os.path.join(REPO, src)), src
            assert not _dockerignored(src.rstrip("/")), f"{src} is excluded by .dockerignore"
    # What must not go into the build context.
    for junk in (".venv", "artifacts", "serving_models", "tests", ".git", "runs",
                 "pipeline/__pycache__/x.pyc"):
        assert _dockerignored(junk), junk
    # Everything the packages need is inside the copied folders.
    from setuptools import find_packages

    copied = {a.split()[0].rstrip("/") for s, a in steps if s == "COPY"}
    for pkg in find_packages(REPO, include=["config", "config.*", "pipeline", "pipeline.*",
                                            "components", "components.*", "serving",
                                            "serving.*"]):
        assert pkg.split(".")[0] in copied


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_install_steps_work_in_a_clean_venv(tmp_path):
    """The Dockerfile's two pip steps, in a fresh venv: the dependency step resolves (dry
    run: tensorflow is large), the code step installs the console script and the presets."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(os.path.join(REPO, name), ctx)
    for pkg in ("pipeline", "components", "serving"):
        (ctx / pkg).mkdir()
        (ctx / pkg / "__init__.py").write_text("")
    dry = subprocess.run(pip + ["install", "--dry-run", ".[kfp]"], cwd=ctx, capture_output=True,
                         text=True, timeout=900)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "tensorflow-2.21" in dry.stdout and "kfp-2." in dry.stdout
    # VARIANT=gpu (not buildable without a GPU here): its extra requirement, as the
    # Dockerfile writes it, resolves together with the CPU dependencies.
    gpu_req = re.search(r'pip install "(tensorflow\[and-cuda\][^"]*)"',
                        open(os.path.join(REPO, "Dockerfile")).read()).group(1)
    gpu = subprocess.run(pip + ["install", "--dry-run", ".[kfp]", gpu_req], cwd=ctx,
                         capture_output=True, text=True, timeout=900)
    assert gpu.returncode == 0, gpu.stderr[-3000:]
    assert "tensorflow-2.21" in gpu.stdout and "nvidia-cudnn-cu12" in gpu.stdout
    for pkg in ("pipeline", "components", "serving", "scripts"):
        shutil.rmtree(ctx / pkg, ignore_errors=True)
        shutil.copytree(os.path.join(REPO, pkg), ctx / pkg,
                        ignore=shutil.ignore_patterns("__pycache__"))
    code = subprocess.run(pip + ["install", "--no-deps", "."], cwd=ctx, capture_output=True,
                          text=True, timeout=300)
    assert code.returncode == 0, code.stderr[-3000:]
    assert (venv / "bin" / "lstm-math").exists()
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.exists(os.path.join(site, "lstm_math", "pipeline", "configs", "smoke.yaml"))
    assert os.path.exists(os.path.join(site, "lstm_math", "pipeline", "kfp_pipeline.py"))
    assert not os.path.exists(os.path.join(site, "pipeline"))  # one namespace
