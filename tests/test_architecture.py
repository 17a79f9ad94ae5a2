"""The package's shape (docs/architecture.md): layers, no import circles, no borrowed private names, small rooms.

Read from the source with `ast`, nothing imported: every `import` of a vidcolor module counts, function-local
ones included (they hide circles as well as module-level ones do).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

#: Layers, top first. A module may import its own layer and those below, never one above.
LAYERS = [
    {"vidcolor.cli", "vidcolor.__main__", "vidcolor.docs", "vidcolor.plugins", "vidcolor.jobs"},
    {"vidcolor.io", "vidcolor.training", "vidcolor.eval"},
    {"vidcolor.colorizer", "vidcolor.temporal", "vidcolor.official", "vidcolor.hints"},
    {"vidcolor.models", "vidcolor.color", "vidcolor.planes", "vidcolor.errors", "vidcolor.runtime",
     "vidcolor.weights", "vidcolor.atomic", "vidcolor"},
]


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "plugins":
        parts = ["vidcolor", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


SOURCES = {module_name(p): p for d in ("vidcolor", "plugins") for p in sorted((ROOT / d).rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in SOURCES.items()}


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative ones resolved against the importer's package)."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if SOURCES[importer].name == "__init__.py" else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def owner(name: str) -> str:
    """The module that defines `name`: the longest known module that is `name` or a prefix of it."""
    while name and name not in SOURCES:
        name = name.rpartition(".")[0]
    return name


def imports(name: str) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every vidcolor import in a module."""
    out = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("vidcolor")]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, node)
            if target.startswith("vidcolor"):
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{target}.{a.name}"
                    out.append((sub, [], node.lineno) if sub in SOURCES else (target, [a.name], node.lineno))
    return out


def layer(name: str) -> int:
    best = max((g for group in LAYERS for g in group if name == g or name.startswith(g + ".")), key=len)
    return next(i for i, group in enumerate(LAYERS) if best in group)


def graph() -> dict[str, set[str]]:
    return {n: {owner(t) for t, _, _ in imports(n)} - {n, ""} for n in SOURCES}


def test_no_import_circle():
    edges = graph()
    # a package's __init__ importing its own submodules is how registries fill; not a circle of the design
    edges = {n: {t for t in ts if not t.startswith(n + ".")} for n, ts in edges.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(n, stack):
        state[n] = 1
        for t in sorted(edges[n]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_from_a_higher_layer():
    wrong = [f"{n} imports {t} (line {line})" for n in SOURCES for t, _, line in imports(n)
             if owner(t) and layer(owner(t)) < layer(n)]
    assert not wrong, "\n".join(wrong)


def test_no_module_borrows_another_modules_private_names():
    wrong = []
    for n in SOURCES:
        local_modules = {}  # alias -> module, for `module._name` access
        for node in ast.walk(TREES[n]):
            if isinstance(node, ast.ImportFrom) and resolve(n, node).startswith("vidcolor"):
                target = resolve(n, node)
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in SOURCES:
                        local_modules[a.asname or a.name] = sub
                    elif owner(target) == n:
                        continue
                    elif a.name.startswith("_") and not a.name.startswith("__"):
                        wrong.append(f"{n}: from {target} import {a.name}")
                    else:  # a class or function of another module: its _names are its own
                        local_modules[a.asname or a.name] = target
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("vidcolor") and a.asname:
                        local_modules[a.asname] = a.name
        for node in ast.walk(TREES[n]):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in local_modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                wrong.append(f"{n}: {node.value.id}.{node.attr} (line {node.lineno})")
    assert not wrong, "\n".join(sorted(set(wrong)))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_rooms_are_small(name):
    lines = len(SOURCES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{SOURCES[name].relative_to(ROOT)}: {lines} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(TREES[name]) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{SOURCES[name].relative_to(ROOT)}: " + ", ".join(long)



def test_collaborators_private_parts_stay_private():
    """`self.other._name` reaches into a collaborator (a colorizer, a stabilizer): use its public names."""
    wrong = [f"{n}: {ast.unparse(node)} (line {node.lineno})" for n in SOURCES for node in ast.walk(TREES[n])
             if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
             and isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name)
             and node.value.value.id == "self"]
    assert not wrong, "\n".join(wrong)


def test_the_checkout_sees_the_filter_as_installed():
    """From inside a clone the clone's vidcolor/ comes first on sys.path and shadows the installed copy, whose
    vidcolor.plugins pyproject.toml maps from plugins/: `python -m pytest` and the README's snippet run there
    must still find it. `-S` with site-packages on PYTHONPATH: the dependencies without any editable-install
    hook, as after `pip install .`."""
    import subprocess
    import sys
    import sysconfig

    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    code = "import vidcolor.plugins.vs as v; print(v.__file__)"
    run = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == str(ROOT / "plugins" / "vs.py")
    run = subprocess.run([sys.executable, "-S", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/test_vapoursynth.py"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "tests collected" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
