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


# -- web/: plain modules that reach the database only through inbox/ ----------------------

# Imports web/ may not make at run time: it calls inbox/ actions and queries instead. A model
# may be named for a type under `if TYPE_CHECKING:` (the rows inbox/ hands back).
DATABASE_MODULES = ("sqlalchemy", "sqlmodel", "inbox.models", "inbox.db")
SESSION_CALLS = {"exec", "execute", "get", "get_one", "add", "scalar", "scalars", "delete"}
LONGEST_WEB_FUNCTION = 60

def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules imported outside `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _database_use(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    problems = [
        f"imports {name}" for name in sorted(_runtime_imports(tree))
        if any(name == m or name.startswith(m + ".") for m in DATABASE_MODULES)
    ]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "session"
                and node.func.attr in SESSION_CALLS):
            problems.append(f"line {node.lineno}: session.{node.func.attr}(...)")
    return problems


def test_web_reaches_the_database_only_through_inbox() -> None:
    offenders = {
        path.relative_to(ROOT).as_posix(): found
        for path in sorted((ROOT / "web").glob("*.py"))
        if (found := _database_use(path))
    }
    assert offenders == {}


def test_the_database_check_catches_a_query_and_an_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\n"
        "from sqlmodel import select\n"
        "if TYPE_CHECKING:\n    from inbox.models import Agent\n"
        "async def handler(session):\n    return await session.get(Agent, 1)\n"
    )
    assert _database_use(bad) == ["imports sqlmodel", "imports sqlmodel.select",
                                  "line 6: session.get(...)"]


def _long_functions(path: Path, root: Path = ROOT) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    name = path.relative_to(root).as_posix()
    return {
        f"{name}:{node.name}" for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > LONGEST_WEB_FUNCTION
    }


def test_no_function_in_web_is_longer_than_60_lines() -> None:
    """Handlers stay small: the work lives in inbox/ actions and queries."""
    found: set[str] = set()
    for path in sorted((ROOT / "web").glob("*.py")):
        found |= _long_functions(path)
    assert sorted(found) == []


def test_the_length_check_finds_a_long_function_and_a_nested_one(tmp_path: Path) -> None:
    long = tmp_path / "long.py"
    long.write_text("def f() -> None:\n" + "    x = 1\n" * 60 + "def g() -> None:\n"
                    "    async def h() -> None:\n" + "        y = 2\n" * 60
                    + "def short() -> None:\n" + "    z = 3\n" * 59)
    assert _long_functions(long, tmp_path) == {"long.py:f", "long.py:g", "long.py:h"}


def test_every_json_api_module_ends_with_its_operations() -> None:
    """Each module the app serves as the JSON API has a module-level OPERATIONS table of
    module-level handlers: nothing is built inside a factory closure."""
    from web.app import API_MODULES

    for module in API_MODULES:
        source = Path(module.__file__ or "").read_text()
        tree = ast.parse(source)
        assert any(isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "OPERATIONS"
                   for n in tree.body), module.__name__
        factories = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                     and n.name.endswith("_routes")]
        assert factories == [], module.__name__


def test_the_social_channels_are_adapters_only() -> None:
    """Telegram, Messenger and Instagram live in channels/ and one registry line each: no
    code in inbox/ names them (their rules reach it as data: capabilities, bus messages)."""
    kinds = {"telegram", "messenger", "instagram"}
    named = []
    for path in sorted((ROOT / "inbox").rglob("*.py")):
        if "/migrations/" in path.as_posix():
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                    | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings
                    and any(kind in node.value.lower() for kind in kinds)):
                named.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                if any(kind in name.lower() for kind in kinds):
                    named.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert named == []
    registry = (ROOT / "channels" / "registry.py").read_text()
    assert all(registry.count(name) == 2 for name in (
        "TelegramChannel", "MessengerChannel", "InstagramChannel"))  # imported, listed
