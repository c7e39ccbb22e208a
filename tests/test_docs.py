"""Every ```python block of the guide pages runs as written (each block on its own)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["index", "quickstart", "routing", "requests", "responses", "errors", "lifespan", "testing"]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = (DOCS / f"{page}.md").read_text()
        for index, match in enumerate(BLOCK.finditer(text)):
            found.append((page, index, match.group(1)))
    return found


@pytest.mark.parametrize(("page", "index", "code"), blocks(), ids=lambda value: str(value)[:20])
def test_doc_example_runs(page: str, index: int, code: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page}_{index}"}
    exec(compile(code, f"docs/{page}.md[{index}]", "exec"), namespace)
