"""The version manager (:class:`ModelManager`): versions on disk -> loaded servables
(:class:`lstm_math.serving.server.servable.Servable`).

The manager polls ``<model_base>/<model_name>`` and keeps the newest ``num_versions``
versions that load loaded. Version names follow :func:`lstm_math.serving.contract.versions` (plain
ASCII decimal integers within int64; anything else is ignored with one warning). A version
that fails to load is reported (state END with the error) and never displaces a good one;
it is retried when its files change. A loaded version that disappears from disk is unloaded
after its in-flight requests finish; if the model directory itself cannot be listed, nothing
changes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import tensorflow as tf

from lstm_math.serving import contract
from lstm_math.serving.contract import DEFAULT_MODEL_NAME
from lstm_math.serving.metrics import Metrics
from lstm_math.serving.server.defaults import DEFAULT_POLL_SECONDS  # noqa: F401 - re-exported
from lstm_math.serving.server.errors import NotFound
from lstm_math.serving.server.servable import Servable

logger = logging.getLogger("lstm_math.serving")
_MAX_LOAD_ATTEMPTS = 3  # loads of one version with unchanged files
_MAX_FINGERPRINT_FILES = 10_000


def _fingerprint(path: str) -> Tuple:
    """What the files of a version directory look like: (relative path, size, mtime) each."""
    entries = []
    try:
        if "://" in path:
            for root, _, files in tf.io.gfile.walk(path):
                for name in files:
                    full = os.path.join(root, name)
                    st = tf.io.gfile.stat(full)
                    entries.append((os.path.relpath(full, path), st.length, st.mtime_nsec))
                    if len(entries) >= _MAX_FINGERPRINT_FILES:
                        break
        else:
            for root, _, files in os.walk(path):
                for name in files:
                    full = os.path.join(root, name)
                    try:
                        st = os.stat(full)
                    except OSError:
                        continue
                    entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
                if len(entries) >= _MAX_FINGERPRINT_FILES:
                    break
    except (OSError, tf.errors.OpError):
        pass
    return tuple(sorted(entries))


class ModelManager:
    """Keeps the newest ``num_versions`` loadable versions of one model loaded; polls."""

    def __init__(self, model_base: str, model_name: str = DEFAULT_MODEL_NAME,
                 num_versions: int = 2, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 batching: Optional[Dict[str, Any]] = None, metrics: Optional[Metrics] = None,
                 model_warmup: bool = True):
        self.model_base = model_base
        self.model_warmup = model_warmup
        self.model_name = model_name
        self.model_dir = os.path.join(model_base, model_name)
        self.num_versions = max(1, int(num_versions))
        self.poll_seconds = float(poll_seconds)
        self.batching = batching
        self.metrics = metrics or Metrics()
        self._lock = threading.Lock()
        self._servables: Dict[int, Servable] = {}
        self._latest: Optional[Servable] = None
        self._loading: Optional[int] = None
        # version -> (attempts, reason); the files' fingerprint of those attempts beside it
        self._failures: Dict[int, Tuple[int, str]] = {}
        self._failed_prints: Dict[int, Tuple] = {}
        self._list_error: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._available = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self.poll_once()
        if self._latest is None:
            logger.warning("no servable version of '%s' under %s yet; waiting for one",
                           self.model_name, self.model_dir)
        self._thread = threading.Thread(target=self._poll_loop, name="model-poller",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.poll_seconds * 2))
        with self._lock:
            servables = list(self._servables.values())
            self._servables.clear()
            self._latest = None
        for s in servables:
            s.retire(timeout=5.0)

    def wait_available(self, timeout: float) -> bool:
        return self._available.wait(timeout)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a bad poll must not kill the poller
                logger.exception("polling %s failed", self.model_dir)

    # -- polling -----------------------------------------------------------------------
    def _listdir(self, path: str) -> List[str]:
        if "://" in path:
            return tf.io.gfile.listdir(path)
        return os.listdir(path)

    def _complete(self, version: int) -> bool:
        path = os.path.join(self.model_dir, str(version))
        exists = tf.io.gfile.exists if "://" in path else os.path.exists
        return (exists(os.path.join(path, contract.SAVED_MODEL_FILE))
                or exists(os.path.join(path, "saved_model.pbtxt")))

    def versions_on_disk(self) -> Optional[List[int]]:
        """Complete versions on disk, newest first; None when the model directory cannot
        be listed (then the poll changes nothing)."""
        try:
            found = contract.versions(self.model_dir, listdir=self._listdir)
        except (OSError, tf.errors.OpError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            if message != self._list_error:
                logger.warning("cannot list %s: %s", self.model_dir, message)
                self._list_error = message
            return None
        self._list_error = None
        return sorted((v for v in found if self._complete(v)), reverse=True)

    def _should_try(self, version: int) -> bool:
        """False for a version that failed ``_MAX_LOAD_ATTEMPTS`` times with these files."""
        with self._lock:
            if version not in self._failures:
                return True
            attempts, _ = self._failures[version]
            before = self._failed_prints.get(version)
        path = os.path.join(self.model_dir, str(version))
        if _fingerprint(path) != before:
            with self._lock:  # its files changed: a fresh start
                self._failures.pop(version, None)
                self._failed_prints.pop(version, None)
            logger.info("%s version %d changed on disk; loading it again", self.model_name,
                        version)
            return True
        return attempts < _MAX_LOAD_ATTEMPTS

    def _load(self, version: int) -> bool:
        path = os.path.join(self.model_dir, str(version))
        with self._lock:
            self._loading = version
        fingerprint = _fingerprint(path)
        try:
            logger.info("loading %s version %d from %s", self.model_name, version, path)
            servable = Servable(self.model_name, version, path, self.batching, self.metrics,
                                model_warmup=self.model_warmup)
        except Exception as exc:  # noqa: BLE001 - record it, keep serving what we have
            with self._lock:
                self._loading = None
                attempts, _ = self._failures.get(version, (0, ""))
                self._failures[version] = (attempts + 1, f"{type(exc).__name__}: {exc}")
                self._failed_prints[version] = fingerprint
            logger.error("loading %s version %d failed (attempt %d): %s", self.model_name,
                         version, attempts + 1, exc)
            self.metrics.inc("model_load_total", model=self.model_name, status="error")
            return False
        with self._lock:
            self._loading = None
            self._failures.pop(version, None)
            self._failed_prints.pop(version, None)
            self._servables[version] = servable
            self._latest = self._servables[max(self._servables)]
            latest = self._latest.version
        self._available.set()
        gc.freeze()  # the new version's objects live on: out of the collector's way
        self.metrics.inc("model_load_total", model=self.model_name, status="ok")
        logger.info("%s version %d is AVAILABLE (loaded in %.2fs); serving version %d",
                    self.model_name, version, servable.load_seconds, latest)
        return True

    def poll_once(self) -> None:
        on_disk = self.versions_on_disk()
        if on_disk is None:
            return
        window: List[int] = []  # the versions to keep loaded: newest good ones first
        for version in on_disk:
            if len(window) >= self.num_versions or self._stop.is_set():
                break
            with self._lock:
                loaded = version in self._servables
            if loaded or (self._should_try(version) and self._load(version)):
                window.append(version)
        if self._stop.is_set():
            return
        retired = []
        with self._lock:
            for version in list(self._servables):
                # beyond the window, or gone from disk: unloaded once its requests finish
                if version not in window:
                    retired.append(self._servables.pop(version))
            self._latest = self._servables[max(self._servables)] if self._servables else None
            for version in list(self._failures):
                if version not in on_disk:
                    self._failures.pop(version)
                    self._failed_prints.pop(version, None)
            loaded = sorted(self._servables)
            latest = self._latest
        self.metrics.set("model_versions_loaded", len(loaded), model=self.model_name)
        if latest is not None:
            self.metrics.set("model_latest_version", latest.version, model=self.model_name)
        for servable in retired:
            logger.info("%s version %d leaves the serving window", self.model_name,
                        servable.version)
            threading.Thread(target=servable.retire, name=f"retire-{servable.version}",
                             daemon=True).start()

    # -- lookup ------------------------------------------------------------------------
    def _check_name(self, name: str) -> None:
        if name != self.model_name:
            raise NotFound(f"Servable not found for request: Latest({name})")

    @contextlib.contextmanager
    def acquire(self, name: str, version: Optional[int] = None) -> Iterator[Servable]:
        """The servable for ``name`` (latest, or a specific loaded version), ref-counted."""
        self._check_name(name)
        with self._lock:
            if version is None:
                servable = self._latest
                if servable is None:
                    raise NotFound(f"Servable not found for request: Latest({name})")
            else:
                servable = self._servables.get(version)
                if servable is None:
                    raise NotFound(f"Servable not found for request: Specific({name}, {version})")
            servable.acquire()
        try:
            yield servable
        finally:
            servable.release()

    def status(self, name: str, version: Optional[int] = None) -> List[Dict[str, Any]]:
        """TF Serving's ModelVersionStatus entries: {version, state, error_code, message}."""
        self._check_name(name)
        rows: Dict[int, Dict[str, Any]] = {}
        with self._lock:
            for v in self._servables:
                rows[v] = {"version": v, "state": "AVAILABLE", "error_code": "OK", "message": ""}
            if self._loading is not None:
                rows[self._loading] = {"version": self._loading, "state": "LOADING",
                                       "error_code": "OK", "message": ""}
            for v, (_, message) in self._failures.items():
                rows.setdefault(v, {"version": v, "state": "END", "error_code": "UNKNOWN",
                                    "message": message})
        if version is not None:
            if version not in rows:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [rows[version]]
        if not rows:
            raise NotFound(f"Could not find any versions of model {name}")
        return [rows[v] for v in sorted(rows, reverse=True)]

    @property
    def loaded_versions(self) -> List[int]:
        with self._lock:
            return sorted(self._servables)
