"""Sizes a newcomer can read: no module over 400 lines, no function over 60, no class over 25
methods in harness/ (the shipped exercises are package data, not the package's code)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "harness"
MODULE_LINES, FUNCTION_LINES, CLASS_METHODS = 400, 60, 25


def sources() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if not p.is_relative_to(PKG / "training" / "exercises")]


def test_no_module_over_the_limit() -> None:
    big = [f"{p.relative_to(PKG.parent)}: {n} lines" for p in sources()
           if (n := len(p.read_text().splitlines())) > MODULE_LINES]
    assert not big, f"modules over {MODULE_LINES} lines:\n" + "\n".join(big)


def test_no_function_or_class_over_the_limit() -> None:
    bad = []
    for p in sources():
        for node in ast.walk(ast.parse(p.read_text())):
            where = f"{p.relative_to(PKG.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > FUNCTION_LINES:
                    bad.append(f"{where} function {node.name}: {n} lines")
            elif isinstance(node, ast.ClassDef):
                m = sum(isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef) for b in node.body)
                if m > CLASS_METHODS:
                    bad.append(f"{where} class {node.name}: {m} methods")
    assert not bad, "\n".join(bad)
