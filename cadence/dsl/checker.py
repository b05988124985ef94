"""The checker: every rule of LANGUAGE.md's "Checks the compiler makes", over a loaded workspace.

`check_workspace` returns errors and warnings together, sorted by file, line and column,
with the loader's syntax diagnostics first in line. When a file does not parse, its
declarations are missing from the workspace and every name it declares would be reported
as unknown elsewhere; so with syntax errors only the syntax errors are returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from cadence.dsl.checks.context import CHECK_CODES, CheckContext
from cadence.dsl.checks.declarations import check_declarations
from cadence.dsl.checks.events import check_event_names
from cadence.dsl.checks.flow import check_paths_through, check_send_loops
from cadence.dsl.checks.scope import check_engagement_scope
from cadence.dsl.checks.settings import check_settings
from cadence.dsl.checks.steps import check_budget_costs, check_trigger_block
from cadence.dsl.loader import Workspace, load, load_text
from cadence.dsl.symbols import collect_symbols
from cadence.errors import CadenceCheckError, Diagnostic

__all__ = [
    "CHECK_CODES",
    "check_or_raise",
    "check_paths",
    "check_text",
    "check_workspace",
    "expand_paths",
    "sort_diagnostics",
]


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Duplicates dropped, then in reading order: file, line, column, errors before warnings."""
    return sorted(
        set(diagnostics),
        key=lambda d: (d.file, d.line, d.column, d.severity != "error", d.code, d.message),
    )


def check_workspace(workspace: Workspace) -> list[Diagnostic]:
    """Every error and warning about a loaded workspace, syntax diagnostics included."""
    if any(d.severity == "error" for d in workspace.diagnostics):
        return sort_diagnostics(workspace.diagnostics)
    symbols = collect_symbols(workspace)
    ctx = CheckContext(workspace, symbols, list(workspace.diagnostics))
    check_declarations(ctx)
    for unit in symbols.campaigns.values():
        check_settings(ctx, unit)
        for block in unit.triggers:
            check_trigger_block(ctx, unit, block)
        check_paths_through(ctx, unit)
        check_engagement_scope(ctx, unit)
        check_budget_costs(ctx, unit)
    check_send_loops(ctx, symbols)
    check_event_names(ctx)
    return sort_diagnostics(ctx.diagnostics)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders replaced by every `*.cadence` inside them, recursively, sorted."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        candidate = Path(path)
        found = sorted(candidate.rglob("*.cadence")) if candidate.is_dir() else [candidate]
        for file in found:
            # A file named twice (or inside a folder also named) is checked once.
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def check_paths(paths: Iterable[str | Path]) -> list[Diagnostic]:
    """Check each root file (folders expanded) as its own workspace with its imports."""
    diagnostics: list[Diagnostic] = []
    for file in expand_paths(paths):
        diagnostics.extend(check_workspace(load([file])))
    return sort_diagnostics(diagnostics)


def check_text(text: str, name: str = "<string>", base_dir: str | Path = ".") -> list[Diagnostic]:
    """Check source held in memory; imports and body files resolve against `base_dir`."""
    return check_workspace(load_text(text, name, base_dir))


def check_or_raise(diagnostics: Sequence[Diagnostic]) -> None:
    """Raise `CadenceCheckError` when the findings include an error (warnings pass)."""
    if any(d.severity == "error" for d in diagnostics):
        raise CadenceCheckError(diagnostics)
