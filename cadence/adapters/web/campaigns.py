"""Campaigns over HTTP: deploy source, read state and performance, move the lifecycle.

The same calls as `cadence deploy | launch | pause | resume | cancel | archive | clone |
approve | status | report`, for a product's backend or an ops tool that cannot run the
CLI. A campaign is deployed from its Cadence source, checked and compiled here exactly as
`cadence deploy` does; its problems come back with their lines and columns, and nothing
is deployed. Posted source cannot import files or read a template's `body file`: the
server's files are not the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from cadence.adapters.web.http import Request, Response, json_body
from cadence.dsl import ast
from cadence.dsl.compiler import check_and_compile_text
from cadence.dsl.parser import parse_text, with_line_feeds
from cadence.engine.runtime import Engine, EngineError
from cadence.errors import Diagnostic, DiagnosticError

# The lifecycle moves a POST to /campaigns/NAME/MOVE makes, each an `Engine` method taking
# the name and returning how many enrollments (or contacts) it moved.
MOVES = ("launch", "pause", "resume", "cancel", "archive")
POSTED_FILE = "posted.cadence"
# `?file=`: a file's name as `cadence deploy` records it, without the folders.
FILE_NAME = re.compile(r"[^/\\\x00]{1,200}\.cadence")


class CampaignsAPI:
    """The `/campaigns` routes over one engine (the caller has shown the API token)."""

    def __init__(self, engine: Engine) -> None:
        """Serve `engine`'s tenant."""
        self.engine = engine

    async def handle(self, method: str, parts: list[str], request: Request) -> Response | None:
        """Answer a request under /campaigns; None when the route is not one of these."""
        match (method, parts):
            case ("GET", ["campaigns"]):
                return await self.list()
            case ("POST", ["campaigns"]):
                return await self.deploy(request)
            case ("GET", ["campaigns", name]):
                return await self.one(name)
            case ("POST", ["campaigns", name, "clone"]):
                return await self.clone(name, request)
            case ("POST", ["campaigns", name, "approve"]):
                return await self.approve(name, request)
            case ("POST", ["campaigns", name, move]) if move in MOVES:
                return await self.move(name, move)
        return None

    async def list(self) -> Response:
        """Every campaign as `Engine.status()` gives it, with its `cadence report` object."""
        campaigns = await self.engine.status()
        performance = {report.name: report.as_dict() for report in await self.engine.report()}
        for row in campaigns:
            row["performance"] = performance.get(row["name"])
        return Response.json(200, {"tenant": self.engine.tenant, "campaigns": campaigns})

    async def one(self, name: str) -> Response:
        """One campaign's status and performance (by template and variant too)."""
        row = await self._row(name)
        if row is None:
            return _unknown(name)
        (report,) = await self.engine.report([name])
        return Response.json(200, {**row, "performance": report.as_dict()})

    async def deploy(self, request: Request) -> Response:
        """Check, compile and deploy the posted source (`?migrate=1`: as `deploy --migrate`)."""
        try:
            text = with_line_feeds(request.body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return Response.json(400, {"error": f"the body is not UTF-8 (byte {exc.start})"})
        if not text.strip():
            return Response.json(400, {"error": "the body is empty; expected Cadence source"})
        # A compiled campaign records its file's name, so the version `cadence deploy`
        # made from welcome.cadence is the one posted as `?file=welcome.cadence`.
        file = request.param("file") or POSTED_FILE
        if not FILE_NAME.fullmatch(file):
            return Response.json(400, {
                "error": f"?file={file!r}: expected the source's file name, such as"
                " welcome.cadence (no folders)",
            })  # fmt: skip
        try:
            # Refused before the check, which would read the files (and name their folder's).
            refused = _file_reads_refused(parse_text(text, file))
            if refused:
                return _problems(refused)
            compiled = check_and_compile_text(text, file)
        except DiagnosticError as exc:
            return _problems([d for d in exc.diagnostics if d.severity == "error"])
        migrate = (request.param("migrate") or "").lower() in ("1", "true", "yes")
        try:
            results = await self.engine.deploy(compiled.campaigns, migrate=migrate)
        except EngineError as exc:
            return Response.json(409, {"error": str(exc)})
        return Response.json(200, {
            "deployed": [asdict(result) for result in results],
            "warnings": [_diagnostic(d) for d in compiled.warnings],
        })  # fmt: skip

    async def move(self, name: str, move: str) -> Response:
        """Launch, pause, resume, cancel or archive; 409 naming why when the move is refused."""
        if await self._row(name) is None:
            return _unknown(name)
        act: Callable[[str], Awaitable[int]] = getattr(self.engine, move)
        try:
            moved = await act(name)
        except EngineError as exc:
            return Response.json(409, {"error": str(exc)})
        row = await self._row(name)
        return Response.json(200, {"name": name, "status": row and row["status"], "moved": moved})

    async def clone(self, name: str, request: Request) -> Response:
        """A draft copy under the posted `{"name": NEW}`."""
        payload, problem = json_body(request.body)
        new_name = payload.get("name") if isinstance(payload, dict) else None
        if problem is not None or not isinstance(new_name, str) or not new_name:
            return Response.json(400, {"error": problem or 'expected {"name": "new_name"}'})
        if await self._row(name) is None:
            return _unknown(name)
        try:
            result = await self.engine.clone(name, new_name)
        except EngineError as exc:
            return Response.json(409, {"error": str(exc)})
        return Response.json(201, asdict(result))

    async def approve(self, name: str, request: Request) -> Response:
        """Approve the current (or waiting) version: `{"by": WHO, "note": optional}`."""
        payload, problem = json_body(request.body)
        by = payload.get("by") if isinstance(payload, dict) else None
        note = payload.get("note") if isinstance(payload, dict) else None
        if problem is not None or not isinstance(by, str) or not by.strip():
            return Response.json(400, {"error": problem or 'expected {"by": "who approves"}'})
        if note is not None and not isinstance(note, str):
            return Response.json(400, {"error": "note: expected text"})
        if await self._row(name) is None:
            return _unknown(name)
        try:
            version = await self.engine.approve(name, by=by, note=note)
        except EngineError as exc:
            return Response.json(409, {"error": str(exc)})
        return Response.json(200, {"name": name, "approved": version, "by": by})

    async def _row(self, name: str) -> dict[str, Any] | None:
        """The campaign's status row, or None when the tenant has no such campaign."""
        return next((row for row in await self.engine.status() if row["name"] == name), None)


def _unknown(name: str) -> Response:
    return Response.json(404, {"error": f"no campaign named {name!r}"})


def _problems(diagnostics: list[Diagnostic]) -> Response:
    return Response.json(400, {
        "error": f"{len(diagnostics)} problem(s) in the source; nothing was deployed",
        "problems": [_diagnostic(d) for d in diagnostics],
    })  # fmt: skip


def _diagnostic(diagnostic: Diagnostic) -> dict[str, Any]:
    """A diagnostic as `cadence check --format json` gives it."""
    data = asdict(diagnostic)
    data.pop("source_line", None)
    return data


def _file_reads_refused(program: ast.Program) -> list[Diagnostic]:
    """Every import and `body file` of posted source: each would read the server's files."""
    refused: list[Diagnostic] = []
    for declaration in program.declarations:
        if isinstance(declaration, ast.Import):
            refused.append(_refusal(
                declaration.span, "E021",
                f'cannot import "{declaration.path}": posted source cannot import files',
                "post one source with every declaration it uses",
            ))  # fmt: skip
        elif isinstance(declaration, ast.TemplateDecl):
            parts = [declaration.content, *(block.content for block in declaration.locales)]
            for path in (part.body_file for part in parts if part.body_file is not None):
                refused.append(_refusal(
                    path.span, "E217",
                    f'cannot read the body file "{path.value}": posted source cannot read files',
                    'write the body inline: body "..."',
                ))  # fmt: skip
    return refused


def _refusal(span: ast.Span, code: str, message: str, hint: str) -> Diagnostic:
    return Diagnostic(
        span.file, span.line, span.column, span.end_line, span.end_column, "error", code,
        message, hint=hint,
    )  # fmt: skip
