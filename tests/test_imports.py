"""The package's own imports sit at the top of each module; one inside a function says why.

The reasons that keep an import in a function: `leadml --help` start-up (cli.py, console.py),
a real import cycle, an optional or heavy dependency used on one path. Each such line carries a
`# lazy: <why>` comment; whole modules not swept yet are listed below with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "leadml"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def own_imports_in_functions(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports of leadml (absolute or relative) anywhere inside a function body."""
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom):
                own = node.level > 0 or (node.module or "").split(".")[0] == "leadml"
            elif isinstance(node, ast.Import):
                own = any(a.name.split(".")[0] == "leadml" for a in node.names)
            else:
                continue
            if own:
                found.append(node)
    return list({id(n): n for n in found}.values())  # nested functions are walked twice


def unexplained(source: str) -> list[int]:
    """Lines of the in-function imports of leadml without `# lazy:` on any of their lines."""
    lines = source.splitlines()
    return sorted(
        node.lineno
        for node in own_imports_in_functions(ast.parse(source))
        if not any("# lazy:" in line for line in lines[node.lineno - 1 : node.end_lineno])
    )


def test_in_function_imports_of_leadml_say_why():
    modules = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(modules) > 20
    offenders = []
    for path in modules:
        source = path.read_text()
        lines = source.splitlines()
        for line in unexplained(source):
            offenders.append(f"{module_name(path)}:{line}: {lines[line - 1].strip()}")
    assert offenders == [], (
        "move these imports to the top of the module, or say why not with `# lazy: <reason>`:\n"
        + "\n".join(offenders)
    )


def test_the_check_sees_what_it_should():
    """The checker flags bare in-function imports (absolute, relative, `import leadml.x`, in
    nested functions and methods) and lets commented, top-level and third-party ones pass."""
    source = (
        "from leadml.config import Config\n"
        "def f():\n"
        "    import json\n"
        "    from leadml.errors import LeadmlError\n"
        "    from . import schema\n"
        "    import leadml.features\n"
        "    from leadml.calllist import (  # lazy: a reason\n"
        "        split_list,\n"
        "    )\n"
        "    def g():\n"
        "        from leadml.bundle import load_bundle\n"
        "class C:\n"
        "    def m(self):\n"
        "        from leadml.train import TreeModel  # lazy: a reason\n"
        "        from leadml.ledger import bundle_finder\n"
    )
    assert unexplained(source) == [4, 5, 6, 11, 15]
    assert module_name(PACKAGE / "batch" / "__init__.py") == "leadml.batch"
