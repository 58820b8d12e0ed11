"""Habits the codebase keeps: functions one can read in one screen, lint and format clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


def _long_functions() -> list[str]:
    found = []
    for path in sorted((ROOT / "ddnn_deploy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_one_screen():
    assert _long_functions() == []


def _ruff() -> list[str]:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'ddnn-deploy[dev]')")
    return [ruff]


def test_ruff_check_and_format_are_clean():
    ruff = _ruff()
    check = subprocess.run(
        [*ruff, "check", "ddnn_deploy", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run(
        [*ruff, "format", "--check", "ddnn_deploy", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]
