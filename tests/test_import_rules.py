"""The project's dependency rules, checked by parsing every import (``ast``, nothing runs).

  * no import circles between the project's modules (imports inside functions count: a
    lazy import that dodges a circle is still a circle);
  * leaves import no project module but other leaves: the serving contract, the example
    layout, the task's arithmetic (the equation grammar, and the sampling built on it);
    the config schema imports only leaves;
  * components import no pipeline module (the config they are given is the leaf
    ``lstm_math.config``);
  * every node's fingerprint is derived from what the node declares: no config path is
    written anywhere in the runner or the pipeline description but in a node's
    declaration (tests/test_pipeline_fingerprints.py checks the fingerprints themselves);
  * serving's server, client and batching code import nothing from pipeline/ or components/;
  * the signature builder lives with the Exporter (components/), and only the Exporter side
    imports it;
  * one place knows the artifact store's layout: the completion marker's name appears in
    pipeline/artifacts.py only;
  * no test imports another test file (shared code lives in tests/helpers.py);
  * one namespace: every project module is ``lstm_math.<folder>...`` and nothing in the
    repository imports ``pipeline``, ``components`` or ``serving`` as top-level names.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE = "lstm_math"
PACKAGES = ("config", "pipeline", "components", "serving")  # folders, installed as lstm_math.<folder>
LEAVES = ("lstm_math.serving.contract", "lstm_math.components.example_layout",
          "lstm_math.components.equations", "lstm_math.components.sampling",
          "lstm_math.components.answer_formats")
ORCHESTRATION = ("lstm_math.pipeline.runner", "lstm_math.pipeline.pipeline",
                 "lstm_math.pipeline.commands", "lstm_math.pipeline.cli_commands",
                 "lstm_math.pipeline.cli")
SERVING_RUNTIME = ("lstm_math.serving.server", "lstm_math.serving.client",
                   "lstm_math.serving.batching")
EXPORTER_SIDE = ("lstm_math.components.exporter", "lstm_math.components.evaluator",
                 "lstm_math.components.infra_validator")

# Cross-test imports in files this restructuring did not own; each should go (the test
# fails when one disappears, so the list only shrinks).
KNOWN_TEST_IMPORTS: set = set()


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    rel = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
    return f"{NAMESPACE}.{rel}" if rel.split(".")[0] in PACKAGES else rel


def _sources(*tops) -> dict:
    out = {}
    for top in tops:
        for dirpath, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    out[_module_name(path)] = path
    return out


MODULES = _sources(*PACKAGES)


def _imports(path: str, known) -> set:
    """Project modules that a file imports (``from a import b`` is ``a.b`` when that is a
    module, else ``a``)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", getattr(block.test, "attr", None))
                   == "TYPE_CHECKING" for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports are for annotations only
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                     else node.module for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in (NAMESPACE, *PACKAGES, "tests"))
    return found


GRAPH = {m: _imports(p, MODULES) - {m} for m, p in MODULES.items()}


def _violations(modules, forbidden) -> list:
    return sorted((m, i) for m in modules for i in GRAPH[m]
                  if any(i == f or i.startswith(f + ".") for f in forbidden))


def test_there_are_modules_to_check():
    assert {"lstm_math.config", "lstm_math.pipeline.runner",
            "lstm_math.components.trainer", "lstm_math.components.tuner",
            "lstm_math.serving.server"} <= set(GRAPH)


def test_one_namespace_no_top_level_project_names():
    """Every import of project code goes through ``lstm_math``: a bare ``import pipeline``
    would work from the checkout and break once installed beside another ``pipeline``."""
    everything = _sources(*PACKAGES, "tests", "benchmarks", "scripts")
    bare = sorted((os.path.relpath(p, REPO), i) for p in everything.values()
                  for i in _imports(p, MODULES) if i.split(".")[0] in PACKAGES)
    assert bare == [], "import these as lstm_math.<name>: " + repr(bare)


def test_no_import_circles():
    done, stack, circles = set(), [], []

    def visit(m):
        if m in stack:
            circles.append(stack[stack.index(m):] + [m])
            return
        if m in done or m not in GRAPH:
            return
        stack.append(m)
        for i in sorted(GRAPH[m]):
            visit(i)
        stack.pop()
        done.add(m)

    for m in sorted(GRAPH):
        visit(m)
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_leaves_import_no_project_module_but_leaves():
    assert {m: GRAPH[m] - set(LEAVES) for m in LEAVES if GRAPH[m] - set(LEAVES)} == {}
    assert GRAPH["lstm_math.components.equations"] == set()  # the grammar imports nothing


def test_config_imports_only_leaves():
    config = [m for m in GRAPH if m == "lstm_math.config"
              or m.startswith("lstm_math.config.")]
    assert len(config) >= 2
    bad = [(m, i) for m in config for i in GRAPH[m]
           if i not in LEAVES and not i.startswith("lstm_math.config")]
    assert bad == []


def test_components_import_no_pipeline_module():
    components = [m for m in GRAPH if m.startswith("lstm_math.components")]
    assert _violations(components, ("lstm_math.pipeline",)) == []


CONFIG_SECTIONS = ("name", "task", "trainer", "tuner", "evaluator", "exporter", "pusher",
                   "runtime", "cluster")


def _config_paths(path: str) -> list:
    """(line, string) of every string constant in a file that is a dotted config path."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and "." in n.value and n.value.split(".")[0] in CONFIG_SECTIONS
            and " " not in n.value]


def test_every_fingerprint_is_derived_from_the_nodes_declarations():
    """The runner hashes what a node declares; no hand-written list of config sections
    can drift from what the node is given."""
    assert _config_paths(os.path.join(REPO, "pipeline", "runner.py")) == []
    path = os.path.join(REPO, "pipeline", "pipeline.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    create = next(n for n in ast.walk(tree)
                  if isinstance(n, ast.FunctionDef) and n.name == "create_pipeline")
    declared = {n.lineno for n in ast.walk(create) if isinstance(n, ast.Constant)}
    assert [p for p in _config_paths(path) if p[0] not in declared] == []
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Node")
    fields = [t.target.id for t in node.body if isinstance(t, ast.AnnAssign)]
    assert fields == ["name", "run", "inputs", "config", "runtime", "resolvers"]
    # the node functions get a Context of declared values, not the config
    context = next(n for n in ast.walk(tree)
                   if isinstance(n, ast.ClassDef) and n.name == "Context")
    assert "config" not in [t.target.id for t in context.body if isinstance(t, ast.AnnAssign)]


def test_serving_runtime_imports_nothing_from_pipeline_or_components():
    assert _violations(SERVING_RUNTIME, ("lstm_math.pipeline", "lstm_math.components")) == []


def test_signature_builder_lives_with_the_exporter():
    assert "lstm_math.components.signature" in GRAPH
    users = sorted(m for m, imports in GRAPH.items()
                   if "lstm_math.components.signature" in imports)
    assert users and all(any(u == side or u.startswith(side + ".") for side in EXPORTER_SIDE)
                         for u in users), users


def test_one_place_knows_the_artifact_store_layout():
    holders = []
    for m, path in MODULES.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        if any(isinstance(n, ast.Constant) and n.value == "artifact.json"
               for n in ast.walk(tree)):
            holders.append(m)
    assert holders == ["lstm_math.pipeline.artifacts"]
    # and the commands find artifacts through the runner, not the store's functions
    assert _violations(["lstm_math.pipeline.cli", "lstm_math.pipeline.cli_commands",
                        "lstm_math.pipeline.commands"],
                       ("lstm_math.pipeline.artifacts",)) == []


def test_no_test_imports_another_test_file():
    tests = _sources("tests")
    found = {(os.path.relpath(p, REPO), i) for m, p in tests.items()
             for i in _imports(p, tests) if i.startswith("tests.test_")}
    assert found - KNOWN_TEST_IMPORTS == set(), "import shared code from tests/helpers.py"
    assert KNOWN_TEST_IMPORTS - found == set(), "fixed: take it off KNOWN_TEST_IMPORTS"


@pytest.mark.parametrize("rule", [_violations])
def test_the_checker_sees_a_violation(rule):
    """The rules can fail: the graph holds known real edges the checks would catch."""
    assert ("lstm_math.pipeline.runner", "lstm_math.config") in rule(
        ["lstm_math.pipeline.runner"], ("lstm_math.config",))
    assert ("lstm_math.components.trainer.run", "lstm_math.components.trainer.loop") in rule(
        ["lstm_math.components.trainer.run"], ("lstm_math.components.trainer.loop",))
