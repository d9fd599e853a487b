"""Shared test code: the CLI in a subprocess, digests of generated files, free ports, a
cache of ExampleGen outputs (one per data config per test session; see conftest's
``examples_for``), and stand-ins for trained networks written in plain TensorFlow
(``OracleModel``, ``TableOracle``): they read the equation from the encoder ids and answer
with known mistakes, so every figure the Evaluator or the InfraValidator reports can be
checked independently. Test files import from here, never from each other."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

from lstm_math.components import tokenizer
from lstm_math.components.equations import max_equation_chars, max_result_chars
from lstm_math.config import Coverage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_coverage(**fields) -> Coverage:
    """A ``Coverage`` from fields of its JSON form; what a test leaves out is a two-operand
    '+' task over 0..99, with the lengths that task's equations and answers need."""
    d = {"operators": ["+"], "operand_min": 0, "operand_max": 99, "num_operands": 2, **fields}
    n = int(d["num_operands"])
    d.setdefault("max_input_length", max_equation_chars(int(d["operand_max"]), n))
    d.setdefault("max_result_length", max_result_chars(
        d["operators"], int(d["operand_min"]), int(d["operand_max"]), n,
        int(d.get("min_operands") or n)))
    return Coverage.from_dict(d)


def lstm_math(*args, cwd=None, timeout=600, check=True):
    """Runs ``lstm-math`` (``python -m lstm_math.pipeline.cli``) from this checkout."""
    cmd = [sys.executable, "-m", "lstm_math.pipeline.cli", *args]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


HEAVY_MODULES = ("tensorflow", "keras", "apache_beam")


def cli_in_fresh_python(argv, cwd=None, env=None, timeout=120):
    """Runs ``lstm_math.pipeline.cli.main(argv)`` in a fresh Python (PYTHONPATH this
    checkout unless ``env`` is given). Returns (the finished process, main's exit status,
    the heavy modules of HEAVY_MODULES it had imported by then); the process's stdout is
    what main printed."""
    import ast

    code = ("import sys\nfrom lstm_math.pipeline.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as stop:\n"
            "    rc = stop.code if isinstance(stop.code, int) else int(stop.code is not None)\n"
            f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
            "print('\\nEXIT', rc or 0, heavy)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env=env if env is not None else dict(os.environ, PYTHONPATH=REPO))
    printed, _, last = proc.stdout.rstrip().rpartition("\n")
    word, rc, heavy = (last.split(" ", 2) + ["", ""])[:3]
    assert word == "EXIT", proc.stdout[-2000:] + proc.stderr[-2000:]
    proc.stdout = printed
    return proc, int(rc), ast.literal_eval(heavy)


def digest(directory) -> dict:
    """File name -> sha256 of every file directly in ``directory``."""
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def read_split(directory, split) -> list:
    """(equation, result) rows of one split, in file order."""
    from lstm_math.components import data as data_lib

    rows = []
    for batch in data_lib.features_dataset(str(directory), split, 512):
        rows += list(zip(batch["equation"].numpy().astype(str),
                         batch["result"].numpy().astype(str)))
    return rows


def free_ports(n: int = 1) -> list:
    """``n`` distinct TCP ports nothing listens on right now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class ExampleCache:
    """ExampleGen outputs keyed by the data config: each distinct ``task.data`` is generated
    once and shared (read-only) by every test that asks for it."""

    def __init__(self, make_dir):
        self._make_dir = make_dir
        self._dirs: dict[str, str] = {}

    def __call__(self, preset: str = "smoke", *overrides: str) -> str:
        from lstm_math.components.example_gen import run_example_gen
        from lstm_math.config import fingerprint_dict, load_config

        data = load_config(preset, list(overrides)).task.data
        key = fingerprint_dict(dataclasses.asdict(data))
        if key not in self._dirs:
            out = str(self._make_dir())
            run_example_gen(data, out, [])
            self._dirs[key] = out
        return self._dirs[key]


# Source for a fresh `python -I -c` process (after `import importlib.machinery`): classes
# that make Keras unimportable there, as on a machine without it (`import tensorflow` itself
# imports Keras when it is installed); `sys.meta_path.insert(0, BlockKeras())` arms them.
BLOCK_KERAS = r"""
class Refuse:
    def create_module(self, spec):
        raise ImportError("keras blocked")
    def exec_module(self, module):
        raise ImportError("keras blocked")

class BlockKeras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tf_keras"):
            return importlib.machinery.ModuleSpec(name, Refuse(), origin=None)
"""


# --------------------------------------------------------------------------------------
# The serving contract of a pushed model, checked from a process without project code.

_CONTRACT_SCRIPT = r"""
import json, sys
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
rows = ["31 + 87", "12+7", "31 + x", "", "1 + 2 + 3", "5 * 5", "1000 + 1"]
out = fn(equation=tf.constant(rows))
print(json.dumps({
    "dtypes": {k: v.dtype.name for k, v in out.items()},
    "inputs": {k: v.dtype.name for k, v in fn.structured_input_signature[1].items()},
    "valid": out["valid"].numpy().tolist(),
    "error": [e.decode() for e in out["error"].numpy()],
    "result": [r.decode() for r in out["result"].numpy()],
    "confidence": out["confidence"].numpy().tolist(),
    "trusted": out["trusted"].numpy().tolist(),
    "project_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("components", "pipeline", "serving")),
}))
"""



def check_served_contract(version_dir: str, cwd: str) -> None:
    """A pushed version answers per the serving contract, loaded in a fresh ``python -I``
    process that imports no project code: dtypes, per-row validity and reasons."""
    proc = subprocess.run([sys.executable, "-I", "-c", _CONTRACT_SCRIPT, version_dir],
                          capture_output=True, text=True, timeout=300, cwd=cwd, check=True)
    out = json.loads(proc.stdout)
    assert out["project_modules"] == []
    assert out["inputs"] == {"equation": "string"}
    assert out["dtypes"] == {"result": "string", "valid": "bool", "error": "string",
                             "confidence": "float32", "trusted": "bool"}
    assert out["valid"] == [True, True, False, False, False, False, False]
    assert out["error"][:2] == ["", ""]
    assert "unknown character 'x'" in out["error"][2]
    assert "empty" in out["error"][3]
    assert "too long" in out["error"][4]
    assert "not trained" in out["error"][5]
    assert "out of the trained range" in out["error"][6]
    assert all(r == "" for r in out["result"][2:])
    assert all(0.0 <= c <= 1.0 for c in out["confidence"])
    assert out["confidence"][2:] == [0.0] * 5
    assert out["trusted"][2:] == [False] * 5


# --------------------------------------------------------------------------------------
# Stand-ins for trained networks.


def _texts(encoder_ids):
    chars = tf.gather(tf.constant([""] * len(tokenizer.SPECIALS) + list(tokenizer.CHARACTERS)),
                      encoder_ids)
    return tf.strings.reduce_join(chars, axis=1)


class OracleModel(tf.Module):
    """Two operands. Right on every equation except ``a == wrong_a`` with operator '+',
    where it answers truth + ``offset`` (``always_wrong``: on every equation). Per-step
    probability 0.99 where right and 0.6 where wrong; ``sure_when_b_odd``: 0.999 where wrong
    and b is odd (confidently wrong)."""

    def __init__(self, coverage: Coverage, wrong_a: int = 7, offset: int = 100,
                 always_wrong: bool = False, sure_when_b_odd: bool = False):
        super().__init__()
        self.reverse = coverage.reverse_output
        self.wrong_a = wrong_a
        self.offset = offset
        self.always_wrong = always_wrong
        self.sure_when_b_odd = sure_when_b_odd

    def greedy_decode(self, encoder_ids, steps: int):
        text = _texts(encoder_ids)
        numbers = tf.strings.split(tf.strings.regex_replace(text, r"[+\-*/]", " "))
        values = tf.strings.to_number(numbers, out_type=tf.int64).to_tensor(shape=[None, 2])
        a, b = values[:, 0], values[:, 1]
        op = tf.strings.regex_replace(text, r"[0-9]", "")
        result = tf.where(tf.equal(op, "+"), a + b,
                          tf.where(tf.equal(op, "-"), a - b,
                                   tf.where(tf.equal(op, "*"), a * b,
                                            tf.math.floordiv(a, tf.maximum(b, 1)))))
        wrong = tf.equal(op, "+") & tf.equal(a, self.wrong_a)
        if self.always_wrong:
            wrong = tf.ones_like(wrong)
        result = tf.where(wrong, result + self.offset, result)
        _, ids = tokenizer.encode_results(tf.strings.as_string(result), steps - 1, self.reverse)
        used = tf.sequence_mask(tokenizer.result_lengths(ids), steps)
        wrong_p = tf.where(self.sure_when_b_odd & (b % 2 == 1), 0.999, 0.6)
        p = tf.where(wrong, wrong_p, 0.99)[:, None] * tf.ones([1, steps])
        return ids, tf.where(used, p, 1.0)


class TableOracle(tf.Module):
    """Any operand count: answers by looking the compact equation up in a table of the whole
    (small) space. ``mistake(equation) -> (answer, per-step probability) or None`` decides
    the wrong answers; right ones get ``right_p`` per step."""

    def __init__(self, coverage: Coverage, mistake, right_p: float = 0.99):
        super().__init__()
        self.reverse = coverage.reverse_output
        space = coverage.space()
        keys, answers, probs = [], [], []
        self.wrong = {}
        for i in range(space.size):
            e = space.equation_at(i)
            keys.append(e.text.replace(" ", ""))
            bad = mistake(e)
            if bad is None:
                answers.append(str(e.result))
                probs.append(right_p)
            else:
                answers.append(str(bad[0]))
                probs.append(float(bad[1]))
                self.wrong[e.text] = bad
        init = tf.lookup.KeyValueTensorInitializer
        self.answers = tf.lookup.StaticHashTable(init(keys, answers), "?")
        self.probs = tf.lookup.StaticHashTable(
            init(tf.constant(keys), tf.constant(probs, tf.float32)), 0.5)

    def greedy_decode(self, encoder_ids, steps: int):
        text = _texts(encoder_ids)
        _, ids = tokenizer.encode_results(self.answers.lookup(text), steps - 1, self.reverse)
        used = tf.sequence_mask(tokenizer.result_lengths(ids), steps)
        p = self.probs.lookup(text)[:, None] * tf.ones([1, steps])
        return ids, tf.where(used, p, 1.0)


def trainer_kwargs(config) -> dict:
    """What the pipeline's Trainer node gives ``run_trainer`` beyond the ``trainer``
    section, from ``config``."""
    from lstm_math.pipeline.pipeline import create_pipeline, params_of

    p = params_of(create_pipeline(config).node("Trainer"), config)
    return {"shuffle_seed": p.shuffle_seed, "strategy": p.strategy}


def evaluate_as_pipeline(config, model, coverage: Coverage, examples_dir: str, output_dir: str):
    """``evaluate_model`` given what the pipeline's Evaluator node is given for ``config``:
    its declared sections and its baseline resolved now."""
    from lstm_math.components.evaluator import evaluate_model
    from lstm_math.pipeline.pipeline import create_pipeline, params_of, resolve

    node = create_pipeline(config).node("Evaluator")
    p = params_of(node, config)
    return evaluate_model(p.evaluator, model, coverage, examples_dir, output_dir,
                          split_fractions=p.split_fractions, jit_compile=p.jit_compile,
                          judged_against=resolve(node, config)["baseline"])
