"""The segment tree and path templates, without ASGI (the router's pure core)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from asgikit._matcher import SegmentTree, compile_template, route_path


def build(*templates: str) -> SegmentTree[str, str]:
    tree: SegmentTree[str, str] = SegmentTree()
    for template in templates:
        tree.insert(compile_template(template), lambda template=template: template)
    return tree


def take(leaf: str, _: Any) -> str:
    return leaf


def lookup(tree: SegmentTree[str, str], path: str) -> tuple[Any, dict[str, Any]] | None:
    found = tree.find(path, take, None)
    return None if found is None else (found[0], found[1])


def test_static_paths_are_indexed_whole() -> None:
    tree = build("/a/b", "/a/{x}")
    assert "/a/b" in tree.static and "/a/{x}" not in tree.static


def test_lookup_cost_does_not_grow_with_route_count() -> None:
    # Count the nodes a lookup visits: the same with 10 and with 10,000 decoys.
    def visits(decoys: int) -> int:
        templates = [f"/res{i}/{{id}}/items/{{item}}" for i in range(decoys)]
        tree = build(*templates, "/users/{id}/items/{item}")
        calls = 0

        def counting(leaf: str, _: Any) -> str:
            nonlocal calls
            calls += 1
            return leaf

        assert tree.find("/users/1/items/2", counting, None) is not None
        return calls

    assert visits(10) == visits(10_000) == 1


def test_params_converted() -> None:
    tree = build("/u/{a:int}/{b:float}/{c:uuid}/{d}/{e:path}")
    value = uuid.uuid4()
    found = lookup(tree, f"/u/1/2.5/{value}/x/y/z")
    assert found == (
        "/u/{a:int}/{b:float}/{c:uuid}/{d}/{e:path}",
        {"a": 1, "b": 2.5, "c": value, "d": "x", "e": "y/z"},
    )


def test_int_rejects_non_ascii_digits_and_signs() -> None:
    tree = build("/n/{n:int}")
    for bad in ("/n/²", "/n/-1", "/n/1.0", "/n/"):
        assert lookup(tree, bad) is None


def test_str_needs_a_non_empty_segment() -> None:
    tree = build("/a/{x}")
    assert lookup(tree, "/a/") is None
    assert lookup(tree, "/a/b/") is None


def test_path_param_may_be_empty_after_the_slash() -> None:
    tree = build("/static/{p:path}")
    assert lookup(tree, "/static/") == ("/static/{p:path}", {"p": ""})
    assert lookup(tree, "/static") is None


def test_backtracking_restores_params() -> None:
    tree = build("/a/{x}/c", "/a/{y:int}/d")
    assert lookup(tree, "/a/5/c") == ("/a/{x}/c", {"x": "5"})
    assert lookup(tree, "/a/5/d") == ("/a/{y:int}/d", {"y": 5})


def test_a_failed_walk_through_sole_parameters_takes_them_out() -> None:
    # Below {first:int} the only way on is {second} (walked without backtracking); it
    # fails two levels down, so the lookup comes back and {other} matches: "second"
    # must not be left in the parameters.
    tree = build("/p/{first:int}/{second}/end", "/p/{other}/x/y")
    assert lookup(tree, "/p/5/x/y") == ("/p/{other}/x/y", {"other": "5"})
    assert lookup(tree, "/p/5/x/end") == (
        "/p/{first:int}/{second}/end",
        {"first": 5, "second": "x"},
    )
    # A static child takes its segment before the sole parameter, which is still tried
    # when the static branch fails.
    tree = build("/q/{a}/{b}", "/q/{a}/fixed/c")
    assert lookup(tree, "/q/1/fixed/c") == ("/q/{a}/fixed/c", {"a": "1"})
    assert lookup(tree, "/q/1/fixed") == ("/q/{a}/{b}", {"a": "1", "b": "fixed"})
    assert lookup(tree, "/q/1/other") == ("/q/{a}/{b}", {"a": "1", "b": "other"})
    assert lookup(tree, "/q/1/fixed/d") is None


def test_mounts_come_after_routes_and_report_consumed_prefix() -> None:
    tree: SegmentTree[str, str] = SegmentTree()
    tree.insert(compile_template("/api/health"), lambda: "health")
    tree.insert_mount(compile_template("/api", prefix=True), "api-mount")
    tree.insert_mount(compile_template("/org/{org}", prefix=True), "org-mount")
    assert tree.find("/api/health", take, None) == ("health", {}, 0)
    assert tree.find("/api/other/x", take, None) == ("api-mount", {}, 4)
    assert tree.find("/org/acme/repos", take, None) == ("org-mount", {"org": "acme"}, 9)
    assert tree.find("/api", take, None) is None


def test_template_format() -> None:
    template = compile_template("/files/{kind}/{rest:path}")
    assert template.format({"kind": "a b", "rest": "x/y z"}) == "/files/a%20b/x/y%20z"
    with pytest.raises(ValueError):
        template.format({"kind": "a/b", "rest": "x"})
    with pytest.raises(ValueError):
        template.format({"kind": "a"})
    assert compile_template("/n/{n:int}").format({"n": 3}) == "/n/3"
    with pytest.raises(ValueError):
        compile_template("/n/{n:int}").format({"n": -3})


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/api/items", "/api", "/items"),
        ("/api", "/api", ""),
        ("/apiary", "/api", "/apiary"),
        ("/items", "", "/items"),
        ("/other", "/api", "/other"),
    ],
)
def test_route_path(path: str, root_path: str, expected: str) -> None:
    assert route_path(path, root_path) == expected


def test_mount_templates() -> None:
    assert compile_template("/", prefix=True).segments == ()
    assert compile_template("/api/", prefix=True).path == "/api"
    with pytest.raises(ValueError):
        compile_template("/files/{rest:path}", prefix=True)
