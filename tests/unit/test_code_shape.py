"""The code keeps the shape docs/architecture.md describes: only stores know a case's
documents, functions stay short unless a comment says why, domain modules pass mypy's
strict mode (and the decisions beside them), and services never import the development tools."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
LONGEST = 60
# A function longer than LONGEST lines says why in a comment just above it (or above
# its decorators) starting "# Long:".
WHY_LONG = re.compile(r"^\s*# Long:")
CASE_BY_NAME = re.compile(r"\bcase(?:\[\"|\.get\(\")")


def python_files(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_only_stores_read_a_case_by_field_name() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in python_files(SERVICES)
        if path.name != "store.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CASE_BY_NAME.search(line)
    ]
    assert not offenders, "a case indexed by string outside a store:\n" + "\n".join(offenders)


def _explained(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    above = first - 2  # the line just above, 0-based
    while above >= 0 and lines[above].strip().startswith("#"):
        if WHY_LONG.match(lines[above]):
            return True
        above -= 1
    return False


def test_no_function_is_longer_than_sixty_lines_without_saying_why() -> None:
    offenders = []
    for path in python_files(SERVICES):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > LONGEST and not _explained(lines, node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length}")
    assert not offenders, "functions over 60 lines without a '# Long:' comment:\n" + "\n".join(
        offenders
    )


def test_services_do_not_import_the_development_tools() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in python_files(SERVICES)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from|import) shared\.tools\b", line)
        and "offline" not in path.relative_to(SERVICES).parts
    ]
    assert not offenders, "a service imports shared.tools:\n" + "\n".join(offenders)


def test_domain_and_decision_modules_pass_mypy_strict() -> None:
    domains = [str(p.relative_to(ROOT)) for p in sorted(SERVICES.glob("*/domain.py"))]
    assert len(domains) == 5
    domains += [str(p.relative_to(ROOT)) for p in sorted(SERVICES.glob("*/decisions.py"))]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *domains],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
