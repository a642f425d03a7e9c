"""The web viewer: server-rendered pages over the run folders in one workspaces folder.

Everything shown comes from transcripts and repositories that hold model output, so
templates escape every value, the pages run no inline script, and a strict
Content-Security-Policy backs that up.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChainableUndefined, Environment, PackageLoader
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from macrohard.config import ModelPrice
from macrohard.viewer.evals import add_eval_pages
from macrohard.viewer.gitread import RepoReader
from macrohard.viewer.live import Tail, stream
from macrohard.viewer.overview import (
    Overview,
    PriceTable,
    Row,
    TimelineFilter,
    price_table,
)
from macrohard.viewer.pages import RunIndex, charts, commit_page, event_page, failure_of, run_page
from macrohard.viewer.runs import EVENT_ID, NotFound, RunFolder, open_run

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
FILTER_MAX = 200
REFRESH_S = 5  # how often the run list reloads while there is no run yet, or one is going on

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Adds the headers above to every response, streaming ones included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


TOKEN_COOKIE = "macrohard_token"


class TokenRequired:
    """For a viewer reachable from other machines: every request carries the token printed
    at start, as ?token=... once (it then becomes a cookie) or as that cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            response = PlainTextResponse("a token is required: open the URL `macrohard serve` printed", status_code=401)
            await response(scope, receive, send)
            return
        if request.query_params.get("token"):
            async def send_with_cookie(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message).append(
                        "set-cookie", f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    )
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        await self.app(scope, receive, send)


def _environment() -> Environment:
    # PackageLoader finds the templates in a source checkout, an editable install and a wheel alike.
    # Events are whatever the transcript holds: a missing field renders empty rather than failing the page.
    env = Environment(loader=PackageLoader("macrohard.viewer", "templates"), autoescape=True, undefined=ChainableUndefined)
    env.filters.update(when=_when, secs=_secs, num=_num, short=_short, css=_css)
    env.tests["event_id"] = lambda value: isinstance(value, str) and EVENT_ID.fullmatch(value) is not None
    return env


# The filters take whatever a template hands them: values from a hand-edited transcript
# can be of any type, and a page must still render.


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _when(ts: object) -> str:
    if not _is_number(ts) or not ts:
        return "—"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))  # type: ignore[arg-type]
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _secs(s: object) -> str:
    if not _is_number(s):
        return "—"
    value = float(s)  # type: ignore[arg-type]
    return f"{value:.2f}s" if value < 60 else f"{int(value // 60)}m {value % 60:04.1f}s"


def _num(n: object) -> str:
    return f"{n:,}" if _is_number(n) else (str(n) if n not in (None, "") else "—")


def _short(sha: object) -> str:
    return str(sha or "")[:10]


def _css(name: object) -> str:
    """A transcript value made safe to use as part of a class name."""
    return re.sub(r"[^a-z0-9-]", "-", str(name or "none").lower())[:40]


def _filter(value: str | None) -> str | None:
    return value.strip() or None if value else None


def create_app(
    workspaces: Path,
    prices: Mapping[str, tuple[float, float] | ModelPrice] | None = None,
    *,
    allowed_hosts: Sequence[str] | None = None,
    poll_s: float = 0.5,
    token: str | None = None,
) -> FastAPI:
    """The viewer over every run folder in `workspaces`.

    prices: by model name, USD per million prompt and completion tokens, as a (prompt, completion)
    pair or the config's ModelPrice (so `Settings.prices` can be passed as is); without it costs show "—".
    allowed_hosts: Host header values to answer (default: loopback names only, which keeps a web
    page elsewhere from reading runs through DNS rebinding); ["*"] answers any.
    """
    workspaces = Path(workspaces)
    table: PriceTable = price_table(prices)
    app = FastAPI(title="Macrohard viewer", docs_url=None, redoc_url=None, openapi_url=None)
    if token:
        app.add_middleware(TokenRequired, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or LOOPBACK_HOSTS))
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(packages=[("macrohard.viewer", "static")]), name="static")
    templates = Jinja2Templates(env=_environment())
    index = RunIndex(workspaces, table)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("root", request.scope.get("root_path", ""))
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def folder_of(run_id: str) -> RunFolder:
        try:
            return open_run(workspaces, run_id)
        except NotFound as e:
            raise StarletteHTTPException(404, str(e)) from None

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        return page(request, "error.html", exc.status_code, status=exc.status_code, detail=str(exc.detail))

    @app.get("/", response_class=HTMLResponse)
    def runs(request: Request) -> HTMLResponse:
        lines = index.lines()
        # With no run yet, or one going on, the list reloads itself: new runs and statuses appear.
        refresh = not lines or any(line.head.live for line in lines)
        return page(request, "runs.html", lines=lines, workspaces=str(workspaces), refresh_s=REFRESH_S if refresh else None)

    add_eval_pages(app, workspaces, page)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(
        request: Request,
        run_id: str,
        role: str | None = Query(None, max_length=FILTER_MAX),
        ticket: str | None = Query(None, max_length=FILTER_MAX),
        kind: str | None = Query(None, max_length=FILTER_MAX),
    ) -> HTMLResponse:
        folder = folder_of(run_id)
        filt = TimelineFilter(role=_filter(role), ticket=_filter(ticket), kind=_filter(kind))
        root = request.scope.get("root_path", "")
        data = run_page(folder, folder.read_transcript(), table, filt, root)
        wanted = {"after": data.last_seq, **filt.model_dump(exclude_none=True)}
        return page(request, "run.html", p=data, run_id=folder.id, stream_query=urlencode(wanted))

    @app.get("/runs/{run_id}/events/{event_id}", response_class=HTMLResponse)
    def event(request: Request, run_id: str, event_id: str) -> HTMLResponse:
        folder = folder_of(run_id)
        if not EVENT_ID.fullmatch(event_id):
            raise StarletteHTTPException(404, f"no event {event_id!r}")
        transcript = folder.read_transcript()
        found = transcript.by_id(event_id)
        if found is None:
            raise StarletteHTTPException(404, f"no event {event_id} in run {folder.id}")
        return page(request, "event.html", p=event_page(folder, transcript, found, table), run_id=folder.id)

    @app.get("/runs/{run_id}/commits/{sha}", response_class=HTMLResponse)
    def commit(request: Request, run_id: str, sha: str) -> HTMLResponse:
        folder = folder_of(run_id)
        diff = RepoReader(folder.repo).diff(sha.lower())
        if diff is None:
            raise StarletteHTTPException(404, f"no commit {sha!r} in run {folder.id}")
        data = commit_page(folder, folder.read_transcript(), diff, table)
        return page(request, "commit.html", p=data, run_id=folder.id)

    @app.get("/runs/{run_id}/stream")
    async def live(
        request: Request,
        run_id: str,
        after: int = Query(0, ge=0),
        role: str | None = Query(None, max_length=FILTER_MAX),
        ticket: str | None = Query(None, max_length=FILTER_MAX),
        kind: str | None = Query(None, max_length=FILTER_MAX),
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        folder = folder_of(run_id)
        if last_event_id and last_event_id.isdigit():
            after = max(after, int(last_event_id))  # a reconnecting browser already has these rows
        filt = TimelineFilter(role=_filter(role), ticket=_filter(ticket), kind=_filter(kind))
        root = request.scope.get("root_path", "")
        row_template = templates.get_template("_row.html")

        def render_row(r: Row) -> str:
            return row_template.render(r=r, root=root, run_id=folder.id)

        async def render_state(tail: Tail) -> dict[str, str]:
            return await asyncio.to_thread(_state, templates.env, tail, folder, root)

        body = stream(Tail(folder, table), after, filt, render_row, render_state, request.is_disconnected, poll_s)
        return StreamingResponse(body, media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    return app


def _state(env: Environment, tail: Tail, folder: RunFolder, root: str) -> dict[str, str]:
    """The parts of a run page that change as a run goes on, rendered for the live page."""
    overview: Overview = tail.overview
    status = overview.status or "running"
    ctx: dict[str, Any] = {"root": root, "run_id": folder.id, "overview": overview, **charts(overview, folder.id, root)}
    failure = failure_of(overview, folder.record()) if status == "failed" else None
    return {
        "status": env.get_template("_status.html").render(status=status, live=not overview.finished),
        "banner": env.get_template("_banner.html").render(chain_break=tail.chain_break, bad_lines=[], failure=failure, **ctx),
        "events": f"{overview.events:,}",
        "board": env.get_template("_board.html").render(ctx),
        "release": env.get_template("_release.html").render(ctx),
        "totals": env.get_template("_totals.html").render(ctx),
        "commits": env.get_template("_commits.html").render(commits=RepoReader(folder.repo).commits(), **ctx),
    }
