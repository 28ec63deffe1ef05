"""Markdown tables: the one formatter behind the project's result tables."""

from __future__ import annotations

from typing import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
  """A GitHub-flavoured Markdown table (cells already formatted as text).

  Args:
    header: the column titles.
    rows: one sequence of cells per row, as many as the header.
  """
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return "\n".join(lines)
