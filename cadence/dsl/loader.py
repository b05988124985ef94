"""Load a Cadence file with everything it imports, so later passes see one set of declarations.

`import "other.cadence"` is resolved relative to the importing file; each file is parsed once,
however many files import it, and an import cycle is an error at the import that closes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cadence.dsl import ast
from cadence.dsl.parser import SourceFile, decode_source, parse_text
from cadence.errors import CadenceSyntaxError, Diagnostic, DiagnosticError


@dataclass(frozen=True, slots=True)
class LoadedFile:
    """One parsed file with its source, so diagnostics can quote it."""

    path: Path
    source: SourceFile
    program: ast.Program


@dataclass(slots=True)
class Workspace:
    """The root files asked for and every file they import, in the order first reached."""

    roots: list[Path] = field(default_factory=list)
    files: dict[Path, LoadedFile] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def declarations(self) -> Iterator[tuple[LoadedFile, ast.Declaration]]:
        """Every declaration of every loaded file, with the file it came from."""
        for loaded in self.files.values():
            for declaration in loaded.program.declarations:
                yield loaded, declaration

    def source_for(self, file_name: str) -> SourceFile | None:
        """The source of a loaded file by the name its spans carry."""
        for loaded in self.files.values():
            if loaded.source.name == file_name:
                return loaded.source
        return None


def load(paths: Iterable[str | Path]) -> Workspace:
    """Parse the given files and their imports; syntax errors are collected, not raised."""
    workspace = Workspace()
    for path in paths:
        resolved = Path(path).resolve()
        workspace.roots.append(resolved)
        _load_file(workspace, resolved, display=str(path), stack=())
    return workspace


def load_text(text: str, name: str = "<string>", base_dir: str | Path = ".") -> Workspace:
    """Load source held in memory; its imports resolve against `base_dir`."""
    workspace = Workspace()
    path = (Path(base_dir) / name).resolve()
    workspace.roots.append(path)
    _add_parsed(workspace, path, text, display=name, stack=())
    return workspace


def load_or_raise(paths: Iterable[str | Path]) -> Workspace:
    """Like `load`, but raise the collected syntax errors instead of returning them."""
    workspace = load(paths)
    if any(d.severity == "error" for d in workspace.diagnostics):
        raise CadenceSyntaxError(workspace.diagnostics)
    return workspace


def _load_file(workspace: Workspace, path: Path, display: str, stack: tuple[Path, ...]) -> None:
    if path in workspace.files:
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        workspace.diagnostics.append(
            Diagnostic(display, 1, 1, 1, 1, "error", "E001", f"cannot read file: {exc.strerror}")
        )
        return
    try:
        text = decode_source(data, display)
    except DiagnosticError as exc:
        workspace.diagnostics.extend(exc.diagnostics)
        return
    _add_parsed(workspace, path, text, display, stack)


def _add_parsed(
    workspace: Workspace, path: Path, text: str, display: str, stack: tuple[Path, ...]
) -> None:
    source = SourceFile(text, display)
    try:
        program = parse_text(text, display)
    except DiagnosticError as exc:
        workspace.diagnostics.extend(exc.diagnostics)
        return
    workspace.files[path] = LoadedFile(path, source, program)
    for declaration in program.declarations:
        if isinstance(declaration, ast.Import):
            _follow_import(workspace, path, source, declaration, (*stack, path))


def _follow_import(
    workspace: Workspace,
    importer: Path,
    source: SourceFile,
    declaration: ast.Import,
    stack: tuple[Path, ...],
) -> None:
    target = (importer.parent / declaration.path).resolve()
    if target in stack:
        workspace.diagnostics.append(
            source.diagnostic(
                declaration.span,
                "E020",
                f'importing "{declaration.path}" closes an import cycle',
                hint="move the shared declarations into a file both can import",
            )
        )
        return
    if not target.is_file():
        workspace.diagnostics.append(
            source.diagnostic(
                declaration.span,
                "E021",
                f'cannot import "{declaration.path}": no such file',
                hint=f"paths are relative to {importer.parent}",
            )
        )
        return
    display = _display_path(target)
    _load_file(workspace, target, display, stack)


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
