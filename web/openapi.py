"""The OpenAPI document, built from the same route table the app serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema


@dataclass(frozen=True)
class Doc:
    """What the OpenAPI document says of one operation."""

    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    many: bool = False
    query: tuple[tuple[str, str], ...] = ()  # (name, description)
    auth: bool = True
    status: int = 200
    extra_responses: dict[int, str] = field(default_factory=dict)


def build_openapi(docs: list[Doc], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document for the operations."""
    models = {m for d in docs for m in (d.body, d.response) if m is not None}
    _, schema = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for doc in docs:
        paths.setdefault(_openapi_path(doc.path), {})[doc.method.lower()] = _operation(doc)
    components = dict(schema.get("$defs", {}))
    components["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "switchboard_session"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _operation(doc: Doc) -> dict[str, Any]:
    """One operation of the document: parameters, body, answers, security."""
    operation: dict[str, Any] = {"summary": doc.summary, "responses": {}}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": kind}}
        for name, kind in _path_params(doc.path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "description": text,
         "schema": {"type": "string"}}
        for name, text in doc.query
    ]
    if params:
        operation["parameters"] = params
    if doc.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(doc.body)}},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if doc.response is not None:
        item = _ref(doc.response)
        ok["content"] = {
            "application/json": {"schema": {"type": "array", "items": item} if doc.many
                                 else item}
        }
    operation["responses"][str(doc.status)] = ok
    errors = {400: "Bad request", 422: "Invalid field"} if doc.body or doc.query else {}
    if doc.body is not None:
        errors[415] = "The body was not sent as application/json"
    if doc.method not in ("GET", "HEAD", "OPTIONS"):
        errors[403] = "Sent from a page of another site"
    if doc.auth:
        errors |= {401: "Not logged in", 403: "CSRF token missing", 404: "Not found"}
    for code, text in (errors | doc.extra_responses).items():
        operation["responses"][str(code)] = {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    if doc.auth:
        operation["security"] = [{"session": []}, {"bearer": []}]
    return operation


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _path_params(path: str) -> list[tuple[str, str]]:
    found = []
    for part in path.split("/"):
        if part.startswith("{"):
            name, _, converter = part[1:-1].partition(":")
            found.append((name, "integer" if converter in ("int", "id") else "string"))
    return found


def _openapi_path(path: str) -> str:
    return "/".join(
        "{" + part[1:-1].split(":")[0] + "}" if part.startswith("{") else part
        for part in path.split("/")
    )
