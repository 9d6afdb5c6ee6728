"""Figures written into Markdown between two HTML-comment markers, so a benchmark's table in the
README or docs/ is the one it measured (``pite-bench engine --write-docs``, ``pite-bench scale --readme``)."""

from __future__ import annotations

import re


def replace_block(text: str, opening: str, closing: str, body: str) -> str | None:
    """``text`` with what lies between its first ``opening`` … ``closing`` markers replaced by
    ``body`` (on lines of its own); None when ``text`` has no such block."""
    pattern = re.compile(re.escape(opening) + r".*?" + re.escape(closing), re.DOTALL)
    written, found = pattern.subn(lambda _: f"{opening}\n{body}\n{closing}", text, count=1)
    return written if found else None
