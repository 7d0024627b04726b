"""The import rules of DESIGN.md, checked on the source: imports run one way."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("config", "hub", "channels", "inbox", "crm_sync", "web")
ALLOWED = {
    "config": set(),
    "hub": {"config"},
    "channels": {"hub", "config"},
    "inbox": {"hub", "config"},
    "crm_sync": {"hub", "inbox", "config"},
    "web": {"config", "hub", "channels", "inbox", "crm_sync"},
}
# The assembly lives in hub/ but builds everything: it may import every part.
ASSEMBLY = {"hub/app.py", "hub/worker.py", "hub/cli.py", "hub/seed.py", "hub/pollers.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PARTS)


def test_every_part_imports_only_what_design_allows() -> None:
    problems = []
    for part in PARTS:
        for path in sorted((ROOT / part).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in ASSEMBLY or "/migrations/" in relative:
                continue
            for imported in sorted(_imports(path) - ALLOWED[part] - {part}):
                problems.append(f"{relative} imports {imported}")
    assert problems == []


def test_inbox_never_names_a_channel_module() -> None:
    offenders = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "inbox").rglob("*.py")
        if "channels" in _imports(path)
    ]
    assert offenders == []


def test_the_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from channels.api import ApiChannel\nimport web.app\n")
    assert _imports(bad) == {"channels", "web"}
