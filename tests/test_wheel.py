"""The built wheel: one top-level name (`lstm_math`), everything the commands load inside it,
and `lstm-math rehearse` working from an installed wheel outside the checkout (slow)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a clean copy of the sources (a checkout's build/ may hold files
    since removed)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(os.path.join(REPO, name), src)
    for name in ("config", "pipeline", "components", "serving"):
        shutil.copytree(os.path.join(REPO, name), src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # --no-build-isolation: the build backend (setuptools >= 64) of this environment, no download
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("lstm_math-*.whl")
    return path


def test_the_wheel_installs_only_lstm_math(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        top_level = z.read(f"{dist_info}/top_level.txt").decode().split()
        record = [line.split(",")[0] for line in z.read(f"{dist_info}/RECORD").decode()
                  .splitlines() if line]
    assert top_level == ["lstm_math"]
    assert {n.split("/")[0] for n in names} == {"lstm_math", dist_info}
    assert {n.split("/")[0] for n in record} == {"lstm_math", dist_info}
    assert not [n for n in names if n.startswith(("pipeline/", "components/", "serving/",
                                                  "config/", "scripts/"))]


def test_the_wheel_holds_what_the_commands_load(wheel):
    """`rehearse` needs the portable runner's services; presets and the serving files are
    data files: all inside the package, none read from a checkout."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        sources = {n: z.read(n).decode() for n in names if n.endswith(".py")}
    for module in ("pipeline/portable_local.py", "pipeline/cluster_local.py",
                   "pipeline/cluster_cli.py", "pipeline/cli.py", "pipeline/configs/smoke.yaml",
                   "pipeline/configs/default.yaml", "config/schema.py", "config/coverage.py"):
        assert f"lstm_math/{module}" in names, module
    # No module loads a file by path from the source tree (scripts/ is not installed).
    loads_by_path = sorted(n for n, text in sources.items()
                           if "spec_from_file_location" in text or "\"scripts\"" in text
                           or "'scripts'" in text)
    assert loads_by_path == []


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rehearse_runs_from_an_installed_wheel_outside_the_checkout(wheel, tmp_path):
    import tensorflow

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies (TensorFlow, Beam, ...) from this environment's site-packages
    deps = os.path.dirname(os.path.dirname(os.path.abspath(tensorflow.__file__)))
    with open(os.path.join(site, "zz_deps.pth"), "w") as f:
        f.write(deps + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    str(wheel)], check=True, timeout=300)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(venv / "bin" / "lstm-math"), "rehearse", "--config", "smoke",
                           "--pipeline-root", "root", "--serving-base", "serving",
                           "--train-workers", "2", "--tuner-workers", "1"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stderr[-5000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # a relative root means the caller's directory to every step process
    assert summary["run_dir"].startswith("root/runs/") and (work / summary["run_dir"]).is_dir()
    assert os.path.isdir(work / "root" / "Trainer")
    assert "--runner=PortableRunner" in open(work / summary["run_dir"] / "logs" /
                                             "ExampleGen.log").read()
