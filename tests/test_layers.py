"""Dependencies point one way: clients ← providers ← the campaign engine ← entry points.

A plain AST walk over every module, top-level and deferred imports alike, so a cycle
cannot hide behind an import inside a function. And a deferred import of our own
modules says why on its line or the line above, so that none is left only to dodge
a cycle.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The modules that are called from outside (the task queue, HTTP, the admin, the
# shell) and may import anything; the engine must not import them.
ENTRY_POINTS = {
    "campaigns.tasks",
    "campaigns.views",
    "campaigns.admin",
    "campaigns.urls",
    "campaigns.forms",
    "providers.webhooks",
    "providers.admin",
    "providers.urls",
    "clients.views",
    "clients.admin",
    "clients.urls",
    "config.urls",
    "config.views",
    "config.wsgi",
    "config.gunicorn",
    "config.middleware",
    "config.lcmanager",
}
OUR_PACKAGES = ("clients", "providers", "campaigns", "config")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts or "tests" in path.parts:
            continue
        yield path


def imports(path: Path):
    """(imported module, line number, deferred) for every import of ours in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        deferred = id(node) not in top_level and not _in_type_checking(tree, node)
        for name in names:
            if name.split(".")[0] in OUR_PACKAGES:
                yield name, node.lineno, deferred


def _in_type_checking(tree, target) -> bool:
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test)
            and any(child is target for child in ast.walk(node))
        ):
            return True
    return False


def is_entry_point(name: str) -> bool:
    if ".management." in f"{name}.":
        return True  # manage.py commands
    return any(name == entry or name.startswith(entry + ".") for entry in ENTRY_POINTS)


def violations(package: str, forbidden) -> list[str]:
    found = []
    for path in modules(package):
        here = module_name(path)
        if is_entry_point(here):
            continue
        for name, line, _deferred in imports(path):
            if forbidden(name):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(set(found))


def test_clients_imports_neither_providers_nor_campaigns():
    assert violations("clients", lambda name: name.startswith(("providers", "campaigns"))) == []


def test_providers_knows_nothing_of_campaigns():
    assert violations("providers", lambda name: name.startswith("campaigns")) == []


@pytest.mark.parametrize("package", ["clients", "providers", "campaigns"])
def test_the_engine_never_imports_its_entry_points(package):
    assert violations(package, is_entry_point) == []


@pytest.mark.parametrize("package", ["clients", "providers", "campaigns", "config"])
def test_a_deferred_import_says_why(package):
    unexplained = []
    for path in modules(package):
        lines = path.read_text().splitlines()
        for _name, line, deferred in imports(path):
            if not deferred:
                continue
            if "#" not in lines[line - 1] and not lines[line - 2].strip().startswith("#"):
                unexplained.append(f"{path.relative_to(ROOT)}:{line}")
    assert sorted(set(unexplained)) == []


def test_the_walk_sees_deferred_imports(tmp_path, monkeypatch):
    # The check above could pass by seeing nothing: it must see an import inside a function.
    module = ROOT / "providers" / "status.py"
    found = list(imports(module))
    assert all(not deferred for *_rest, deferred in found)
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from campaigns import tasks\n")
    assert list(imports(sample)) == [
        ("campaigns", 2, True),
        ("campaigns.tasks", 2, True),
    ]


def test_the_engine_modules_import_each_other_without_a_cycle():
    """Within campaigns (entry points aside), module imports form a DAG: claims, outgoing,
    outcomes, cascade, bulk and the rest can each be read without the ones above them."""
    graph: dict[str, set[str]] = {}
    for path in modules("campaigns"):
        here = module_name(path)
        if is_entry_point(here):
            continue
        graph[here] = set()
        for name, _line, _deferred in imports(path):
            for candidate in (name, name.rpartition(".")[0]):
                if candidate.startswith("campaigns.") and candidate != here:
                    graph[here].add(candidate)
    graph = {module: {d for d in deps if d in graph} for module, deps in graph.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for dependency in sorted(graph[module]):
            visit(dependency, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert {"campaigns.claims", "campaigns.outcomes", "campaigns.bulk"} <= done
