"""TensorBoard's view of a local pipeline root: every pipeline run under a name a person reads.

  <root>/tensorboard/<run name>/tuner       -> ../../Tuner/<fingerprint>/logs
  <root>/tensorboard/<run name>/trainer     -> ../../Trainer/<fingerprint>/logs
  <root>/tensorboard/<run name>/evaluator   -> ../../Evaluator/<fingerprint>/logs

``tensorboard --logdir <root>/tensorboard`` then lists runs such as
``2026-12-02_06.44.12_smoke_learning_rate=0.003/trainer/train`` beside the earlier runs'
(``2026-12-02_06.31.40_smoke/trainer/train``), so two trainings are compared on one chart
and their trials and trainings line up in the HParams dashboard.

A run's name: its start time (UTC, sortable), the preset its config is closest to, and
the config values that differ from that preset (``--set`` overrides or a YAML file's own
values; where the artifacts live, ``runtime.*``, ``cluster.*`` and
``pusher.serving_base``, are left out), at most four of them and ``+N`` for the rest.
Every step of the run is linked, a cached step included (to the logs of the run that
produced it), so a run's folder always shows the whole run. Links are relative, so the
root can be moved; a bucket root has none (``lstm-math run`` prints ``--logdir_spec``).

An orchestrator that runs the steps as separate processes (``lstm-math rehearse``) names
the run once and passes the name in ``LSTM_MATH_TENSORBOARD_RUN``: every step links into
that one folder.
"""

from __future__ import annotations

import datetime
import logging
import os

log = logging.getLogger(__name__)

# Components with TensorBoard logs (<artifact>/logs) -> their name inside a run's folder.
TENSORBOARD_RUNS = {"Tuner": "tuner", "Trainer": "trainer", "Evaluator": "evaluator"}
# Config keys that say where things live, not what was trained: not part of a run's name.
NOT_IN_NAME = ("runtime.", "cluster.", "pusher.serving_base", "name")
RUN_ENV = "LSTM_MATH_TENSORBOARD_RUN"  # a run's folder named by the orchestrator
MAX_SHOWN = 4
MAX_VALUE_CHARS = 24


def _flatten(tree, prefix: str = "") -> dict:
    """{dotted key: leaf value}; an empty mapping has no leaves (a preset's ``{}`` against a
    run's ``{"*": "running_sums"}`` differs in ``answer_format.*`` alone)."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _kept(path: str) -> bool:
    return not any(path == p or path.startswith(p) for p in NOT_IN_NAME)


def _format_value(value) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = ",".join(_format_value(v) for v in value)
    elif value is None:
        text = "null"
    else:
        text = str(value)
    text = "".join("_" if c in "/\\" or c.isspace() else c for c in text)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "~"


def _short_key(path: str, every: set) -> str:
    """The shortest dotted suffix of ``path`` that no other key ends with and that starts
    with a field's name (``answer_format.+``, not ``+``)."""
    parts = path.split(".")
    for n in range(1, len(parts) + 1):
        if not parts[-n].isidentifier():
            continue
        suffix = ".".join(parts[-n:])
        if not any(p != path and (p == suffix or p.endswith("." + suffix)) for p in every):
            return suffix
    return path


def preset_configs() -> dict:
    """{preset name: its config as a flat dict} for every preset shipped with the package."""
    from lstm_math.config import load_config
    from lstm_math.config.loading import CONFIG_DIR

    out = {}
    for fname in sorted(os.listdir(CONFIG_DIR)):
        if fname.endswith(".yaml"):
            try:
                out[fname[:-5]] = _flatten(load_config(fname[:-5]).to_dict())
            except Exception as e:  # noqa: BLE001 - a broken preset names no run
                log.debug("preset %s not loadable: %s", fname, e)
    return out


def describe(config_dict: dict, presets: dict | None = None) -> tuple[str, list[str]]:
    """(closest preset, ["key=value", ...] of the values that differ from it)."""
    flat = {k: v for k, v in _flatten(config_dict).items() if _kept(k)}
    presets = preset_configs() if presets is None else presets
    best = None
    for name, preset in presets.items():
        preset = {k: v for k, v in preset.items() if _kept(k)}
        differ = sorted(k for k in set(flat) | set(preset) if flat.get(k) != preset.get(k))
        if best is None or len(differ) < len(best[1]):
            best = (name, differ, preset)
    if best is None:
        return "custom", []
    name, differ, preset = best
    every = set(flat) | set(preset)
    return name, [f"{_short_key(k, every)}={_format_value(flat.get(k))}" for k in differ]


def run_name(config_dict: dict, started: datetime.datetime | None = None,
             note: str | None = None, presets: dict | None = None) -> str:
    """``2026-12-02_06.44.12_smoke_learning_rate=0.003`` (see the module's docstring)."""
    started = started or datetime.datetime.now(datetime.timezone.utc)
    preset, changes = describe(config_dict, presets)
    shown = changes[:MAX_SHOWN] + ([f"+{len(changes) - MAX_SHOWN}"]
                                   if len(changes) > MAX_SHOWN else [])
    parts = [started.strftime("%Y-%m-%d_%H.%M.%S"), preset, *shown]
    if note:
        parts.append(note)
    return "_".join(parts)


def _is_local(path: str) -> bool:
    return "://" not in path


class RunView:
    """One pipeline run's folder in ``<root>/tensorboard``."""

    def __init__(self, root: str, name: str):
        self.root = root
        self.view = os.path.join(root, "tensorboard")
        self.name = name
        self.dir = os.path.join(self.view, name)

    @classmethod
    def start(cls, root: str, config_dict: dict, note: str | None = None) -> "RunView | None":
        """A new run's folder (not created until a step with logs is shown); None for a
        bucket root. Two runs started in the same second get ``-2``, ``-3``, ..."""
        if not _is_local(root):
            return None
        given = os.environ.get(RUN_ENV, "").strip()
        if given and "/" not in given and given not in (".", ".."):
            _drop_single_run_links(os.path.join(root, "tensorboard"))
            return cls(root, given)  # shared by the steps of one orchestrated run
        try:
            name = run_name(config_dict, note=note)
        except Exception as e:  # noqa: BLE001 - a name is a convenience: never fail a run
            log.warning("TensorBoard run name: %s", e)
            name = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d_%H.%M.%S")
        view = os.path.join(root, "tensorboard")
        unique, n = name, 1
        while os.path.lexists(os.path.join(view, unique)):
            n += 1
            unique = f"{name}-{n}"
        _drop_single_run_links(view)
        return cls(root, unique)

    def show(self, component: str, uri: str | None, require_logs: bool = True) -> str | None:
        """Links ``<run>/<name>`` to ``<uri>/logs`` (replaced atomically), or removes the
        link when ``uri`` is None or has no logs (``require_logs=False``: a step starting,
        its logs to come). Returns the link's path, or None when there is none."""
        name = TENSORBOARD_RUNS.get(component)
        if name is None:
            return None
        link = os.path.join(self.dir, name)
        logs = os.path.join(uri, "logs") if uri else None
        if logs is None or (require_logs and not os.path.isdir(logs)):
            if os.path.islink(link):
                os.remove(link)
            return None
        os.makedirs(self.dir, exist_ok=True)
        tmp = os.path.join(self.dir, f".{name}.{os.getpid()}.tmp")
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(os.path.relpath(os.path.abspath(logs), os.path.abspath(self.dir)), tmp)
        os.replace(tmp, link)  # atomic: a TensorBoard reading the view never sees it missing
        return link


def _drop_single_run_links(view: str) -> None:
    """Removes the links of the older one-run layout (``<view>/trainer`` -> the latest
    Trainer's logs), which would show one run twice."""
    for name in TENSORBOARD_RUNS.values():
        path = os.path.join(view, name)
        if os.path.islink(path):
            os.remove(path)
