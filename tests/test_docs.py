"""Every ```python block of the guide pages runs as written.

The blocks of one page run in order in one namespace, so a page may build an example
up step by step. Fragments that cannot run alone (an ``await`` outside a function, say)
are fenced as ```py instead, which renders the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = [
    "index",
    "quickstart",
    "routing",
    "requests",
    "responses",
    "errors",
    "lifespan",
    "testing",
    "files",
    "websockets",
    "uploads",
    "streaming",
    "serving",
    "middleware",
]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def page_blocks(page: str) -> list[str]:
    return [match.group(1) for match in BLOCK.finditer((DOCS / f"{page}.md").read_text())]


@pytest.mark.parametrize("page", PAGES)
def test_doc_examples_run(page: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    for index, code in enumerate(page_blocks(page)):
        exec(compile(code, f"docs/{page}.md[block {index}]", "exec"), namespace)
