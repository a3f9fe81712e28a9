"""The README's code map names every module of the package, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_code_map_matches_the_tree():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- `(leadml/[\w/]+\.py)`: \S", section, flags=re.M)
    assert len(listed) == len(set(listed)), "a module listed twice"
    tree = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "leadml").rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }
    assert sorted(tree - set(listed)) == [], "modules missing from the README's code map"
    assert sorted(set(listed) - tree) == [], "the code map lists modules that do not exist"
