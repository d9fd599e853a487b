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


class FakePodman:
    """``podman info`` says the backend; ``network create`` makes a network with or without
    DNS; every call is recorded."""

    def __init__(self, backend="cni", dns=True):
        self.backend, self.dns, self.calls = backend, dns, []

    def __call__(self, args, env=None, check=True, timeout=600, **kw):
        self.calls.append(" ".join(args[:3]))
        out = ""
        if args[0] == "info":
            out = self.backend + "\n"
        elif args[:2] == ["network", "inspect"]:
            out = '[{"name": "%s", "dns_enabled": %s}]' % (args[2], str(self.dns).lower())
        return subprocess.CompletedProcess(args, 0, out, "")


def test_network_dns_plugin_missing_and_not_installable_is_one_clear_line(ce, monkeypatch):
    fake = FakePodman("cni")
    monkeypatch.setattr(ce, "podman", fake)
    monkeypatch.setattr(ce.os.path, "exists", lambda p: False)
    with pytest.raises(ce.Unavailable) as e:
        ce.ensure_network_dns(install=False)
    assert str(e.value) == ("podman's cni backend has no DNS plugin (golang-github-"
                            "containernetworking-plugin-dnsname) and it cannot be installed "
                            "here")
    assert fake.calls == ["info --format {{.Host.NetworkBackend}}"]  # no network made


@pytest.mark.parametrize("backend, binary", [("cni", "/usr/lib/cni/dnsname"),
                                             ("netavark", "/usr/lib/podman/aardvark-dns")])
def test_network_dns_is_checked_on_a_network_it_creates_and_removes(ce, monkeypatch, backend,
                                                                    binary):
    monkeypatch.setattr(ce.os.path, "exists", lambda p: p == binary)
    fake = FakePodman(backend, dns=True)
    monkeypatch.setattr(ce, "podman", fake)
    assert ce.ensure_network_dns(install=False) == backend
    net = ce.DNS_CHECK_NETWORK
    assert fake.calls[1:] == [f"network rm -f", f"network create {net}",
                              f"network inspect {net}", "network rm -f"]
    fake = FakePodman(backend, dns=False)  # the plugin is there but podman does not use it
    monkeypatch.setattr(ce, "podman", fake)
    with pytest.raises(RuntimeError, match=f"podman \\({backend} backend\\) creates networks "
                                           "without DNS"):
        ce.ensure_network_dns(install=False)
    assert fake.calls[-1] == "network rm -f"  # the check's network is removed either way
