"""Property tests (hypothesis) for path templates and the segment tree.

A template either compiles or is refused with a `ValueError`/`TypeError` that says why;
a path written by `Template.format` matches back to the very same parameters; and
whatever the routes and the path, `SegmentTree.find` answers with a route whose template
matches the path (checked against a regular expression built here, independently of
the tree), or ``None`` only when no template matches it. Kept fast: modest
``max_examples``, no deadline.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgikit._matcher import SegmentTree, Template, compile_template

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What each converter matches, written out here (not taken from the module under test).
PATTERNS = {
    "int": r"[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "str": r"[^/]+",
    "path": r".*",
}
CONVERT: dict[str, Any] = {"int": int, "float": float, "uuid": uuid.UUID, "str": str, "path": str}
PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")


def template_regex(path: str) -> re.Pattern[str]:
    pattern = ""
    last = 0
    for found in PARAM.finditer(path):
        kind = found.group(2) or "str"
        pattern += re.escape(path[last : found.start()])
        pattern += f"(?P<{found.group(1)}>{PATTERNS[kind]})"
        last = found.end()
    return re.compile(pattern + re.escape(path[last:]), re.DOTALL)


def expected_params(path: str, request_path: str) -> dict[str, Any] | None:
    found = template_regex(path).fullmatch(request_path)
    if found is None:
        return None
    kinds = {m.group(1): m.group(2) or "str" for m in PARAM.finditer(path)}
    return {name: CONVERT[kinds[name]](text) for name, text in found.groupdict().items()}


# --------------------------------------------------------------------- template strategies

statics = st.text("abcxyz019-._~", max_size=6)
separators = st.text("gkmqvw", min_size=1, max_size=2)  # in no converter's alphabet
typed = st.sampled_from(["int", "float", "uuid"])


@st.composite
def segments(draw: st.DrawFn, names: Any, last: bool) -> str:
    """One template segment; mixed segments stay unambiguous (one ``str`` at most,
    separators that no converter can match)."""
    form = draw(
        st.sampled_from(
            ["static", "whole", "mixed", "path"] if last else ["static", "whole", "mixed"]
        )
    )
    if form == "static":
        return draw(statics)
    if form == "path":
        return "{" + next(names) + ":path}"
    if form == "whole":
        kind = draw(st.sampled_from(["int", "float", "uuid", "str"]))
        return (
            "{" + next(names) + ("" if kind == "str" and draw(st.booleans()) else ":" + kind) + "}"
        )
    kinds = draw(st.lists(typed, min_size=1, max_size=2))
    if draw(st.booleans()):
        kinds.insert(draw(st.integers(0, len(kinds))), "str")
    text = draw(st.sampled_from(["", "v", "gk"]))
    for index, kind in enumerate(kinds):
        if index:
            text += draw(separators)
        text += "{" + next(names) + ":" + kind + "}"
    return text + draw(st.sampled_from(["", "q", ".w"]))


@st.composite
def templates(draw: st.DrawFn) -> str:
    names = iter(f"p{index}" for index in range(100))
    count = draw(st.integers(1, 4))
    return "/" + "/".join(draw(segments(names, index == count - 1)) for index in range(count))


str_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=8
)
path_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
float_values = st.builds(
    lambda whole, fraction: float(f"{whole}.{fraction}"),
    st.integers(0, 10**9),
    st.integers(0, 10**6),
)
VALUES: dict[str, Any] = {
    "int": st.integers(0, 10**30),
    "float": float_values,
    "uuid": st.uuids(),
    "str": str_values,
    "path": path_values,
}


def param_kinds(template: Template) -> dict[str, str]:
    return {name: converter.name for name, converter in template.converters.items()}


def take(leaf: str, _: Any) -> str:
    return leaf


# --------------------------------------------------------------------- compiling


@SETTINGS
@given(st.text(max_size=40) | st.builds(lambda t: "/" + t, st.text("ab{}:/_xint", max_size=30)))
def test_any_text_compiles_or_is_refused_with_a_reason(path: str) -> None:
    for prefix in (False, True):
        try:
            template = compile_template(path, prefix=prefix)
        except ValueError as exc:
            assert repr(path.rstrip("/") if prefix else path) in str(exc) or "route path" in str(
                exc
            )
            continue
        assert template.path == (path.rstrip("/") if prefix else path)
        assert set(template.param_names) == set(template.converters)


@pytest.mark.parametrize("path", [None, b"/items", 5, ["/"]])
def test_a_path_that_is_not_text_is_a_type_error_saying_so(path: Any) -> None:
    # Regression: these raised AttributeError ('NoneType' object has no attribute
    # 'startswith') or a TypeError about bytes.startswith, naming no route path.
    with pytest.raises(TypeError, match="route path must be a str"):
        compile_template(path)
    with pytest.raises(TypeError, match="route path must be a str"):
        compile_template(path, prefix=True)


# --------------------------------------------------------------------- format <-> match


@SETTINGS
@given(data=st.data(), path=templates())
def test_a_formatted_template_matches_back_to_its_params(data: st.DataObject, path: str) -> None:
    template = compile_template(path)
    params = {
        name: data.draw(VALUES[kind], label=name) for name, kind in param_kinds(template).items()
    }
    url_path = template.format(params)
    assert url_path.isascii() or not params  # percent-encoded, static text aside
    request_path = unquote(url_path)  # servers decode the path into scope["path"]
    tree: SegmentTree[str, None] = SegmentTree()
    tree.insert(template, lambda: path)
    found = tree.find(request_path, take, None)
    assert found is not None, (path, params, request_path)
    leaf, matched, consumed = found
    assert (leaf, consumed) == (path, 0)
    assert matched == params
    assert expected_params(path, request_path) == params


@SETTINGS
@given(
    kind=st.sampled_from(["int", "float", "uuid", "str", "path"]),
    value=st.one_of(
        st.integers(-5, 10**20),
        st.floats(),
        st.text(max_size=10),
        st.uuids(),
        st.booleans(),
        st.none(),
    ),
)
def test_format_writes_a_value_that_converts_back_or_raises_value_error(
    kind: str, value: Any
) -> None:
    template = compile_template("/x/{value:" + kind + "}")
    try:
        url_path = template.format({"value": value})
    except ValueError:  # UnicodeEncodeError (a lone surrogate) included
        return
    found = expected_params(template.path, unquote(url_path))
    assert found is not None
    converted = found["value"]
    if kind == "float":
        assert math.isfinite(converted) and converted == float(value)
    elif kind == "int":
        assert converted == int(value) and not isinstance(value, bool)
    elif kind == "uuid":
        assert converted == uuid.UUID(str(value))
    else:
        assert converted == str(value)


# --------------------------------------------------------------------- the tree


def build(paths: list[str]) -> tuple[SegmentTree[str, None], list[str]]:
    tree: SegmentTree[str, None] = SegmentTree()
    kept = []
    for path in paths:
        template = compile_template(path)
        tree.insert(template, lambda path=path: path)
        kept.append(path)
    return tree, kept


path_pieces = st.sampled_from(
    ["", "a", "b", "x", "1", "42", "2.5", "v7q3", "gk1", str(uuid.UUID(int=7)), "a.w", "%"]
)
request_paths = st.lists(path_pieces, min_size=1, max_size=5).map(
    lambda parts: "/" + "/".join(parts)
)
route_paths = st.one_of(
    templates(),
    st.sampled_from(["/a", "/a/b", "/{x}", "/a/{x:int}", "/{x:float}/b", "/a/{rest:path}", "/"]),
)


@SETTINGS
@given(paths=st.lists(route_paths, min_size=1, max_size=8, unique=True), request_path=request_paths)
def test_find_answers_with_a_matching_route_or_none_when_none_matches(
    paths: list[str], request_path: str
) -> None:
    tree, kept = build(paths)
    found = tree.find(request_path, take, None)
    if found is None:
        assert all(expected_params(path, request_path) is None for path in kept)
        return
    leaf, params, consumed = found
    assert consumed == 0
    assert expected_params(leaf, request_path) == params


@SETTINGS
@given(
    data=st.data(),
    paths=st.lists(route_paths, min_size=1, max_size=8, unique=True),
)
def test_every_route_is_reachable_through_a_crowded_tree(
    data: st.DataObject, paths: list[str]
) -> None:
    tree, kept = build(paths)
    path = data.draw(st.sampled_from(kept))
    template = compile_template(path)
    params = {
        name: data.draw(VALUES[kind], label=name) for name, kind in param_kinds(template).items()
    }
    request_path = unquote(template.format(params))
    found = tree.find(request_path, take, None)
    assert found is not None
    leaf, matched, _ = found
    assert expected_params(leaf, request_path) == matched
    if leaf == path:
        assert matched == params


@SETTINGS
@given(paths=st.lists(route_paths, min_size=1, max_size=4), request_path=st.text(max_size=10))
def test_a_path_without_its_leading_slash_matches_nothing(
    paths: list[str], request_path: str
) -> None:
    tree, _ = build(paths)
    if not request_path.startswith("/"):
        assert tree.find(request_path, take, None) is None


def test_the_same_template_inserted_twice_shares_one_leaf() -> None:
    tree: SegmentTree[list[str], None] = SegmentTree()
    for path in ("/files/{rest:path}", "/models/{name}", "/health"):
        first = tree.insert(compile_template(path), list)
        second = tree.insert(compile_template(path), list)
        assert first is second  # several methods on one path share the entry
