"""scripts/container_env.py without running podman: the config it writes, the one-line
reason when the tools are missing, and that it stops only the service it started."""

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.fixture
def ce():
    spec = importlib.util.spec_from_file_location(
        "container_env", os.path.join(REPO, "scripts", "container_env.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conf_selects_runc_cgroupfs_and_ulimits(ce, tmp_path):
    path = ce.write_conf(str(tmp_path))
    text = open(path).read()
    assert 'runtime = "runc"' in text and 'cgroup_manager = "cgroupfs"' in text
    assert 'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]' in text
    assert ce.engine_env(str(tmp_path))["CONTAINERS_CONF"] == path


def test_missing_tools_without_install_is_one_clear_line(ce, monkeypatch):
    monkeypatch.setattr(ce.shutil, "which", lambda tool, path=None: None)
    with pytest.raises(ce.Unavailable) as e:
        ce.ensure_tools(install=False)
    assert str(e.value) == "no podman, runc, debootstrap on PATH (and --no-install)"


def test_stop_service_stops_only_a_process_it_recorded(ce, tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "service.pid").write_text(str(other.pid))
        assert ce.stop_service(str(tmp_path)) is False  # not a podman service on our socket
        assert other.poll() is None
        assert not (tmp_path / "service.pid").exists()
        assert ce.stop_service(str(tmp_path)) is False  # nothing recorded
    finally:
        other.kill()
        other.wait()
