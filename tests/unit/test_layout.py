"""The layout keeps its promises: the CRM knows nothing of Stripe, the Stripe domain nothing of HTTP
intake or pages, no two modules import each other (directly or around a loop), and no module grows
past what a reader takes in at once. Imports are read from the source, so a lazy import inside a
function counts too."""
import ast
from pathlib import Path

from webapp.config import ROOT

WEBAPP = ROOT / "webapp"
MAX_LINES = 400


def module_name(path: Path) -> str:
    """webapp/stripe_sync/apply/batch.py → webapp.stripe_sync.apply.batch (a package is its __init__)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in WEBAPP.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every webapp module this one imports, at the top or inside a function."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules or {base})
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return groups


def reaching(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    """Lines 'a → b' where a module under prefix imports one under a forbidden prefix."""
    return sorted(f"{a} → {b}" for a, targets in GRAPH.items() if a.startswith(prefix)
                  for b in targets if b.startswith(forbidden))


def test_the_reader_sees_real_imports():
    assert "webapp.stripe_sync.apply.batch" in GRAPH["webapp.stripe_sync.queue.drain"]
    assert "webapp.stripe_sync.queue.enqueue" in GRAPH["webapp.webhooks.intake"]


def test_no_import_cycles():
    assert cycles() == []


def test_the_crm_imports_nothing_from_stripe():
    assert reaching("webapp.crm", ("webapp.stripe_sync", "webapp.stripe_app", "webapp.webhooks")) == []


def test_the_stripe_domain_imports_no_intake_and_no_pages():
    assert reaching("webapp.stripe_sync", ("webapp.webhooks", "webapp.stripe_app")) == []


def test_no_module_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
