"""The agent UI's ES modules import one way: no cycles between web/static/js/*.js.

state.js is the store every module imports; modules hear of each other's changes through it
(`on` / `emit`) instead of importing each other's views. A cycle would make the load order
decide which module sees the other half-built, so the build fails on one.
"""

from __future__ import annotations

import re
from pathlib import Path

JS = Path(__file__).resolve().parents[2] / "web" / "static" / "js"
# import { a } from "./x.js";  import "./x.js";  export { a } from "./x.js";  import("./x.js")
_FROM = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']\./([\w.-]+)\.js["']""")


def module_graph(folder: Path) -> dict[str, set[str]]:
    """Each module's name -> the modules of the folder it imports or re-exports from."""
    return {path.stem: set(_FROM.findall(path.read_text())) for path in sorted(folder.glob("*.js"))}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first walk, each as the path that closes it."""
    found: list[list[str]] = []
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node):], node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            walk(target, [*path, node])
        done.add(node)

    for start in sorted(graph):
        walk(start, [])
    return found


def test_the_agent_ui_modules_have_no_import_cycle() -> None:
    graph = module_graph(JS)
    assert "state" in graph and "thread" in graph["main"]  # the files were read
    assert cycles(graph) == []


def test_every_module_imports_the_store_and_the_store_imports_none() -> None:
    graph = module_graph(JS)
    assert graph["state"] == set()
    views = {"list", "thread", "contact", "conversation-meta", "nav", "composer"}
    assert all("state" in graph[name] for name in views)


def test_the_cycle_check_finds_a_cycle_through_a_re_export(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text('import { b } from "./b.js";\n')
    (tmp_path / "b.js").write_text('export { c } from "./c.js";\n')
    (tmp_path / "c.js").write_text('import {\n  a,\n} from "./a.js";\nimport "./d.js";\n')
    (tmp_path / "d.js").write_text("export const d = 1;\n")
    graph = module_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_views_find_their_elements_once() -> None:
    """No global id look-ups spread through the views: each module names the page's
    elements it works with once (`elements({...})` from dom.js) and uses them by name."""
    spread = {path.name: path.read_text().count('$("#') for path in JS.glob("*.js")
              if path.name != "dom.js"}
    assert {name: n for name, n in spread.items() if n} == {}
