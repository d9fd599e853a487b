#!/usr/bin/env python
"""A container engine for the project's image on one Debian machine with no image registry.

What it sets up (each part skipped when already there):

1. podman, runc and debootstrap (``apt-get install``, as root, where missing), and the
   network backend's DNS plugin, checked on a fresh network: the workers of a distributed
   step find each other by container name;
2. a ``containers.conf`` (runtime ``runc``, ``cgroupfs``, explicit ulimits: podman's
   default ``crun`` fails on hosts with hybrid cgroups), used through ``CONTAINERS_CONF``;
3. a Python base image built from Debian packages (``debootstrap --variant=minbase`` +
   ``podman import``, then a venv first on ``PATH`` so ``python`` and ``pip`` behave as in
   the official ``python:3.11-slim-bookworm`` image the Dockerfile defaults to);
4. the project's image from the Dockerfile, ``--build-arg PYTHON_IMAGE=<that base>``,
   with the host's CA bundle mounted and the host network, so pip reaches the index the
   way this machine does (harness setup: the Dockerfile itself is unchanged);
5. optionally ``podman system service`` on a Unix socket this script owns (its PID in
   ``<state>/service.pid``; ``stop-service`` stops that PID only), for Docker API clients:
   ``DOCKER_HOST=unix://<state>/podman.sock`` (the docker CLI, docker-py, KFP's
   ``DockerRunner``).

Usage::

    python scripts/container_env.py setup [--image lstm-math:local] [--target cpu]
                                          [--no-install] [--no-cache] [--service]
    python scripts/container_env.py report [--image ...]   # layers and site-packages by size
    python scripts/container_env.py stop-service

``setup`` prints one JSON line (image, base, conf, socket, build seconds, size). Importable:
the tests call ``setup()`` and skip with ``Unavailable``'s one-line reason.
Python rather than shell so that the tests and CI share one implementation and read its
state (socket, PID, image) as data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger("container_env")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_DIR = os.environ.get("LSTM_MATH_CONTAINERS_DIR", "/tmp/lstm-math-containers")
BASE_IMAGE = "localhost/lstm-math-base:bookworm-py311"
ROOTFS_IMAGE = "localhost/lstm-math-rootfs:bookworm"
IMAGE = "localhost/lstm-math:local"
VENV = "/usr/local/python"  # the base image's Python, first on PATH
DEBIAN_MIRROR = os.environ.get("LSTM_MATH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}

CONTAINERS_CONF = """\
# Written by scripts/container_env.py: podman with runc and cgroupfs (crun, podman's
# default here, fails on hosts with hybrid cgroups), explicit ulimits.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

BASE_CONTAINERFILE = f"""\
FROM {ROOTFS_IMAGE}
RUN python3 -m venv {VENV} && {VENV}/bin/python -m pip --version \\
    && rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/*
ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8
CMD ["python3"]
"""


class Unavailable(RuntimeError):
    """The engine, its runtime or the base cannot be had here (the message is one line)."""


def _which_all() -> list[str]:
    paths = [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]
    search = os.pathsep.join(paths)
    return [tool for tool in TOOLS if not shutil.which(tool, path=search)]


def _apt_install(packages: list) -> None:
    log.info("installing %s with apt-get", " ".join(packages))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise Unavailable(f"apt-get install {' '.join(packages)} failed: {last}")


def ensure_tools(install: bool = True) -> None:
    """podman, runc and debootstrap on PATH, installed with apt-get (as root) if missing."""
    missing = _which_all()
    if not missing:
        return
    if not install:
        raise Unavailable(f"no {', '.join(missing)} on PATH (and --no-install)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(f"no {', '.join(missing)} on PATH, and no apt-get as root to "
                          "install them")
    _apt_install([TOOLS[t] for t in missing])
    still = _which_all()
    if still:
        raise Unavailable(f"{', '.join(still)} still missing after apt-get install")


# The workers of one distributed step find each other by container name, which podman
# resolves only on networks with DNS: that takes its network backend's DNS plugin, a
# package that ``apt-get install --no-install-recommends podman`` does not bring.
DNS_PLUGINS = {  # network backend -> (Debian package, where podman looks for it, its binary)
    "cni": ("golang-github-containernetworking-plugin-dnsname",
            ["/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni",
             "/usr/lib/cni", "/opt/cni/bin"], "dnsname"),
    "netavark": ("aardvark-dns", ["/usr/local/libexec/podman", "/usr/local/lib/podman",
                                  "/usr/libexec/podman", "/usr/lib/podman"], "aardvark-dns"),
}
DNS_CHECK_NETWORK = "lstm-math-dns-check"


def ensure_network_dns(env: dict | None = None, install: bool = True) -> str:
    """New podman networks resolve container names: the backend's DNS plugin is installed
    (``apt-get``, as root) where missing, then a network is created, read and removed.
    Returns the backend's name."""
    backend = podman(["info", "--format", "{{.Host.NetworkBackend}}"], env=env,
                     timeout=120).stdout.strip()
    package, dirs, binary = DNS_PLUGINS.get(backend, (None, [], None))
    if package and not any(os.path.exists(os.path.join(d, binary)) for d in dirs):
        if not install or os.geteuid() != 0 or not shutil.which("apt-get"):
            raise Unavailable(f"podman's {backend} backend has no DNS plugin ({package}) and "
                              "it cannot be installed here")
        _apt_install([package])
    podman(["network", "rm", "-f", DNS_CHECK_NETWORK], env=env, check=False, timeout=120)
    podman(["network", "create", DNS_CHECK_NETWORK], env=env, timeout=120)
    try:
        info = json.loads(podman(["network", "inspect", DNS_CHECK_NETWORK], env=env,
                                 timeout=120).stdout)[0]
    finally:
        podman(["network", "rm", "-f", DNS_CHECK_NETWORK], env=env, check=False, timeout=120)
    if not info.get("dns_enabled"):
        raise RuntimeError(f"podman ({backend} backend) creates networks without DNS even "
                           f"with {package or 'its DNS plugin'}: containers of one step "
                           "could not find each other by name")
    return backend


def write_conf(state_dir: str = STATE_DIR) -> str:
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, "containers.conf")
    with open(path, "w") as f:
        f.write(CONTAINERS_CONF)
    return path


def engine_env(state_dir: str = STATE_DIR) -> dict:
    """The environment podman runs in: ``CONTAINERS_CONF`` names this script's config."""
    env = dict(os.environ, CONTAINERS_CONF=os.path.join(state_dir, "containers.conf"))
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
    return env


def podman(args: list, env: dict | None = None, check: bool = True, timeout: float = 600,
           **kw) -> subprocess.CompletedProcess:
    """``podman ARGS`` with this setup's config; raises with stderr's tail when ``check``."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    done = subprocess.run(["podman", *args], env=env or engine_env(), timeout=timeout, **kw)
    if check and done.returncode != 0:
        err = (done.stderr or "").strip() if isinstance(done.stderr, str) else ""
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {done.returncode}: "
                           f"{err[-2000:]}")
    return done


def image_exists(name: str, env: dict | None = None) -> bool:
    return podman(["image", "exists", name], env=env, check=False).returncode == 0


def build_base(state_dir: str = STATE_DIR, env: dict | None = None,
               force: bool = False) -> float:
    """The stand-in for ``python:3.11-slim-bookworm``; returns seconds spent (0: cached)."""
    env = env or engine_env(state_dir)
    if image_exists(BASE_IMAGE, env) and not force:
        return 0.0
    if os.geteuid() != 0:
        raise Unavailable("building the Debian base image needs root (debootstrap)")
    started = time.monotonic()
    if force or not image_exists(ROOTFS_IMAGE, env):
        rootfs = os.path.join(state_dir, "rootfs")
        shutil.rmtree(rootfs, ignore_errors=True)
        log.info("debootstrap bookworm (minbase + python3, venv, pip) into %s", rootfs)
        done = subprocess.run(
            ["debootstrap", "--variant=minbase",
             "--include=python3,python3-venv,python3-pip,ca-certificates", "bookworm", rootfs,
             DEBIAN_MIRROR], env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise Unavailable("debootstrap bookworm failed: " + " | ".join(tail))
        with subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE) as tar:
            imported = subprocess.run(["podman", "import", "-", ROOTFS_IMAGE], stdin=tar.stdout,
                                      env=env, capture_output=True, text=True, timeout=900)
        if imported.returncode != 0:
            raise Unavailable(f"podman import failed: {imported.stderr.strip()[-300:]}")
        shutil.rmtree(rootfs, ignore_errors=True)
    ctx = os.path.join(state_dir, "base-context")
    os.makedirs(ctx, exist_ok=True)
    with open(os.path.join(ctx, "Containerfile"), "w") as f:
        f.write(BASE_CONTAINERFILE)
    # one squashed layer: the apt caches removed above are not kept in a lower layer
    done = podman(["build", "--squash-all", "--network=none", "-t", BASE_IMAGE, ctx], env=env,
                  check=False, timeout=900)
    if done.returncode != 0:
        raise Unavailable(f"the base image build failed: {done.stderr.strip()[-300:]}")
    seconds = time.monotonic() - started
    log.info("built %s in %.0fs", BASE_IMAGE, seconds)
    return seconds


def check_runtime(env: dict | None = None) -> None:
    """A container actually runs (the runtime, cgroups and ulimits work here)."""
    done = podman(["run", "--rm", "--network=none", BASE_IMAGE, "python", "-c", "print(6*7)"],
                  env=env, check=False, timeout=300)
    if done.returncode != 0 or done.stdout.strip() != "42":
        err = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"podman cannot run a container here: {err}")


def build_image(image: str = IMAGE, env: dict | None = None, target: str | None = None,
                no_cache: bool = False, build_args: dict | None = None,
                quiet_log: str | None = None) -> float:
    """``podman build`` of the project's Dockerfile on the local base; returns seconds."""
    args = ["build", "--network=host", "-v", "/etc/ssl/certs:/etc/ssl/certs:ro",
            "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", image]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    if target:
        args += ["--target", target]
    if no_cache:
        args.append("--no-cache")
    started = time.monotonic()
    log.info("podman build -t %s%s (log %s)", image, f" --target {target}" if target else "",
             quiet_log or "stderr")
    out = open(quiet_log, "w") if quiet_log else None
    try:
        done = subprocess.run(["podman", *args, REPO], env=env or engine_env(), timeout=3600,
                              stdout=out or subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    finally:
        if out:
            out.close()
    if done.returncode != 0:
        tail = open(quiet_log).read() if quiet_log else done.stdout
        raise RuntimeError(f"podman build failed (exit {done.returncode}):\n{tail[-3000:]}")
    seconds = time.monotonic() - started
    log.info("built %s in %.1fs", image, seconds)
    return seconds


def image_size(image: str = IMAGE, env: dict | None = None) -> int:
    out = podman(["image", "inspect", image, "--format", "{{.Size}}"], env=env).stdout
    return int(out.strip())


def report(image: str = IMAGE, env: dict | None = None) -> str:
    """The image's layers and its installed packages by size."""
    env = env or engine_env()
    lines = [f"{image}: {image_size(image, env) / 1e9:.2f} GB", "layers (size, step):"]
    hist = podman(["history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image],
                  env=env).stdout
    for row in hist.splitlines():
        size, _, step = row.partition("\t")
        lines.append(f"  {size:>10}  {' '.join(step.split())[:110]}")
    du = podman(["run", "--rm", "--network=none", "--entrypoint", "sh", image, "-c",
                 "cd \"$(python -c 'import sysconfig; print(sysconfig.get_paths()"
                 "[\"purelib\"])')\" && du -sk * | sort -rn | head -25 && du -sk . "
                 "&& (du -sk /usr/lib /usr/share /var 2>/dev/null; true)"],
                env=env, timeout=300).stdout
    lines.append("largest entries of site-packages, /usr/lib, /usr/share (MB):")
    for row in du.splitlines():
        kb, _, name = row.partition("\t")
        lines.append(f"  {int(kb) / 1024:8.1f}  {name}")
    return "\n".join(lines)


# -- the Docker API socket --------------------------------------------------------------


def _ping(sock: str, timeout: float = 2.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b" 200 " in s.recv(256)
    except OSError:
        return False


def _our_service(pid: int, sock: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
    except OSError:
        return False
    return b"service" in cmd and any(sock.encode() in a for a in cmd)


def start_service(state_dir: str = STATE_DIR, env: dict | None = None,
                  timeout: float = 60) -> tuple[str, int]:
    """``podman system service`` on ``<state>/podman.sock``; returns (socket, pid)."""
    env = env or engine_env(state_dir)
    sock = os.path.join(state_dir, "podman.sock")
    pid_file = os.path.join(state_dir, "service.pid")
    with contextlib.suppress(OSError, ValueError):
        pid = int(open(pid_file).read())
        if _our_service(pid, sock) and _ping(sock):
            return sock, pid
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)
    with open(os.path.join(state_dir, "service.log"), "a") as out:
        proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    with open(pid_file, "w") as f:
        f.write(str(proc.pid))
    deadline = time.monotonic() + timeout
    while not _ping(sock):
        if proc.poll() is not None:
            raise Unavailable(f"podman system service exited {proc.returncode} (see "
                              f"{state_dir}/service.log)")
        if time.monotonic() > deadline:
            stop_service(state_dir)
            raise Unavailable(f"podman system service did not answer on {sock} in {timeout}s")
        time.sleep(0.2)
    log.info("podman system service (pid %d) on unix://%s", proc.pid, sock)
    return sock, proc.pid


def stop_service(state_dir: str = STATE_DIR, grace: float = 15) -> bool:
    """Stops the service this script started (its recorded PID only); True if it ran."""
    pid_file = os.path.join(state_dir, "service.pid")
    sock = os.path.join(state_dir, "podman.sock")
    try:
        pid = int(open(pid_file).read())
    except (OSError, ValueError):
        return False
    os.unlink(pid_file)
    if not _our_service(pid, sock):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
        except ChildProcessError:  # not our child (another process started it): poll /proc
            if not os.path.exists(f"/proc/{pid}"):
                return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return True


# -- everything --------------------------------------------------------------------------


def setup(image: str = IMAGE, state_dir: str = STATE_DIR, install: bool = True,
          target: str | None = None, no_cache: bool = False, service: bool = False,
          build_log: str | None = None) -> dict:
    """Tools, config, base, runtime check, the project's image (and the socket)."""
    ensure_tools(install)
    conf = write_conf(state_dir)
    env = engine_env(state_dir)
    base_seconds = build_base(state_dir, env)
    check_runtime(env)
    backend = ensure_network_dns(env, install)
    seconds = build_image(image, env, target=target, no_cache=no_cache,
                          quiet_log=build_log or os.path.join(state_dir, "build.log"))
    state = {"image": image, "base": BASE_IMAGE, "conf": conf, "state_dir": state_dir,
             "network_backend": backend,
             "base_build_s": round(base_seconds, 1), "build_s": round(seconds, 1),
             "size_bytes": image_size(image, env)}
    if service:
        sock, pid = start_service(state_dir, env)
        state.update(docker_host=f"unix://{sock}", service_pid=pid)
    return state


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--state-dir", default=STATE_DIR)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="tools, config, base image, the project's image")
    s.add_argument("--image", default=IMAGE)
    s.add_argument("--target", help="a Dockerfile stage (default: the last)")
    s.add_argument("--no-install", action="store_true", help="do not apt-get missing tools")
    s.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    s.add_argument("--service", action="store_true",
                   help="also start podman system service (the Docker API socket)")
    r = sub.add_parser("report", help="the image's layers and packages by size")
    r.add_argument("--image", default=IMAGE)
    sub.add_parser("stop-service", help="stop the podman service this script started")
    args = p.parse_args(argv)
    try:
        if args.cmd == "setup":
            print(json.dumps(setup(args.image, args.state_dir, install=not args.no_install,
                                   target=args.target, no_cache=args.no_cache,
                                   service=args.service)), flush=True)
        elif args.cmd == "report":
            print(report(args.image, engine_env(args.state_dir)))
        else:
            print("stopped" if stop_service(args.state_dir) else "no service of ours running")
    except Unavailable as e:
        log.error("containers unavailable: %s", e)
        return 3
    except RuntimeError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
