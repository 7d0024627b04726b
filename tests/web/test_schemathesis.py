"""Schemathesis against the OpenAPI document, as an admin, an agent and nobody: every
generated request gets an answer that is not a server error and fits its documented
schema."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import Stack

pytestmark = pytest.mark.slow

EXAMPLES = 40
# Operations that end the session the run uses (it would then test only the 401 path).
SKIPPED = {("POST", "/api/v1/auth/logout"), ("PUT", "/api/v1/me/password")}
CHECKS = (not_a_server_error, response_schema_conformance, content_type_conformance,
          status_code_conformance)


def _fuzz(base: str, spec: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """Every operation, EXAMPLES cases each; the failures, one line each."""
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                             derandomize=True, suppress_health_check=list(HealthCheck),
                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, headers=headers, timeout=15)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # one line per failing operation
            inner = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            for failure in inner:
                lines = [x.strip() for x in str(failure).strip().splitlines() if x.strip()]
                failures.append(f"{operation.method.upper()} {operation.path}: "
                                f"{' | '.join(lines[:4])}")
    return failures


async def test_no_generated_request_breaks_the_api(stack: Stack) -> None:
    spec = (await stack.client().get("/api/openapi.json")).json()
    actors: dict[str, dict[str, str]] = {"nobody": {}}
    for name in ("alice", "admin"):
        agent = await stack.login(name)
        cookie = "; ".join(f"{k}={v}" for k, v in agent.http.cookies.items())
        actors[name] = {"Cookie": cookie, "X-CSRF-Token": agent.http.headers["X-CSRF-Token"]}
    failures: dict[str, list[str]] = {}
    for name, headers in actors.items():  # the admin last: it may change the others
        found = await asyncio.to_thread(_fuzz, stack.base, spec, headers)
        if found:
            failures[name] = found
    assert not failures, "\n".join(f"{who}: {line}" for who, lines in failures.items()
                                   for line in lines)
