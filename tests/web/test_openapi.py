"""The OpenAPI document describes every API route the app serves."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from hub.app import create_app
from tests.helpers import Stack


async def test_openapi_document_lists_every_api_route(stack: Stack) -> None:
    spec = (await stack.client().get("/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    paths = spec["paths"]
    assert "/api/v1/conversations/{conversation_id}/messages" in paths
    assert set(paths["/api/v1/conversations/{conversation_id}/messages"]) == {"get", "post"}
    post = paths["/api/v1/conversations/{conversation_id}/messages"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert "text" in schema["properties"]
    for path in paths.values():
        for operation in path.values():
            for response in operation["responses"].values():
                target = response.get("content", {}).get("application/json", {}).get("schema", {})
                ref = target.get("$ref") or target.get("items", {}).get("$ref")
                if ref:
                    assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"]


async def test_spec_covers_the_route_table(stack: Stack) -> None:
    app = create_app(stack.settings)  # built, not started: only its route table is read
    served = {
        (method, re.sub(r":\w+}", "}", route.path))
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api/v1")
        for method in (route.methods or set()) - {"HEAD"}
    }
    spec = (await stack.client().get("/api/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented


async def test_the_api_keeps_its_operations(stack: Stack) -> None:
    """The operations are those listed in openapi_operations.txt, with their summaries:
    reshaping web/ (or anything else) must not add, drop or rename one by accident."""
    spec = (await stack.client().get("/api/openapi.json")).json()
    served = sorted(f"{method.upper()} {path}  {operation['summary']}"
                    for path, item in spec["paths"].items() for method, operation in item.items())
    listed = [line for line in (Path(__file__).parent / "openapi_operations.txt")
              .read_text().splitlines() if line and not line.startswith("#")]
    assert served == listed
