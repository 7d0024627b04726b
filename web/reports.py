"""Reports for team leads and admins: the activity report (JSON and CSV under /api/v1) and
the reports page (/reports: charts, tables and the live load). The figures come from the
rollups of inbox/report_rollups.py; inbox/reports.py reads them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from inbox.agents import Principal
from inbox.reports import GROUPS, ActivityReport, activity_report, report_csv
from web.context import web_context
from web.http import HTTPProblem, Operation, act, authenticated, current_principal, json_response
from web.openapi import Doc
from web.ui import page, redirect

DEFAULT_DAYS = 30
_QUERY = (("start", "first day, YYYY-MM-DD (default: 29 days before the end)"),
          ("end", "last day, YYYY-MM-DD (default: today in the reports' time zone)"),
          ("group", "agent (default), team, inbox, channel or label"))


def _day(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPProblem(400, "invalid_parameter",
                          f"{name} must be a day written YYYY-MM-DD") from None


async def _report(request: Request, principal: Principal) -> ActivityReport:
    ctx = web_context(request)
    zone = ctx.settings.report_time_zone
    end = _day(request, "end")
    if end is None:
        end = datetime.now(ZoneInfo(zone)).date()
    start = _day(request, "start") or end - timedelta(days=DEFAULT_DAYS - 1)
    group = request.query_params.get("group") or "agent"
    if group not in GROUPS:
        raise HTTPProblem(400, "invalid_parameter", f"group must be one of {', '.join(GROUPS)}")
    async with ctx.inbox.db.read() as session:
        return await act(activity_report(
            session, principal, start=start, end=end, group=group, time_zone=zone,
            channel_names={kind: adapter.display_name for kind, adapter in ctx.channels.items()}))


async def get_activity(request: Request, principal: Principal) -> Response:
    """Conversations, response and resolution times, SLA and satisfaction over a range."""
    return json_response(await _report(request, principal))


async def get_activity_csv(request: Request, principal: Principal) -> Response:
    """One table of the activity report as CSV: the groups (and the total), or the days."""
    table = request.query_params.get("table") or "groups"
    if table not in ("groups", "days"):
        raise HTTPProblem(400, "invalid_parameter", "table must be groups or days")
    report = await _report(request, principal)
    name = (f"switchboard-{table if table == 'days' else report.group}-"
            f"{report.start.isoformat()}-{report.end.isoformat()}.csv")
    return Response(report_csv(report, table), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


OPERATIONS: list[Operation] = [
    (Doc("GET", "/api/v1/reports/activity",
         "Activity by agent, team, inbox, channel or label over a range (lead/admin)",
         response=ActivityReport, query=_QUERY), authenticated(get_activity)),
    (Doc("GET", "/api/v1/reports/activity.csv",
         "One table of the activity report as CSV (lead/admin)",
         query=(*_QUERY, ("table", "groups (default) or days"))),
     authenticated(get_activity_csv)),
]


async def reports_page(request: Request) -> Response:
    """The reports page (leads and admins): charts and tables, CSV, the live load."""
    ctx = web_context(request)
    principal = await current_principal(ctx, request)
    if principal is None:
        return redirect("/login")
    if not principal.is_lead:
        return page("message.html", 403, title="Reports",
                    text="Reports are for team leads and admins.")
    return page("reports.html", csrf_token=principal.csrf_token,
                time_zone=ctx.settings.report_time_zone, groups=GROUPS)


ROUTES: list[BaseRoute] = [Route("/reports", reports_page, methods=["GET"])]
