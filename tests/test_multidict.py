"""`QueryParams` and `FormData` share one multi-dict, with one equality rule."""

from __future__ import annotations

import pytest

from asgikit import FormData, QueryParams, UploadFile


@pytest.mark.parametrize("make", [QueryParams, FormData])
def test_the_shared_multidict_api(make: type) -> None:
    params = make([("a", "1"), ("b", "2"), ("a", "3")])
    assert params["a"] == "3" and params.get("a") == "3" and params.get("z") is None
    assert params.getlist("a") == ["1", "3"] and params.getlist("z") == []
    assert params.multi_items() == [("a", "1"), ("b", "2"), ("a", "3")]
    assert list(params) == ["a", "b"] and len(params) == 2
    assert list(params.items()) == [("a", "3"), ("b", "2")]
    assert "a" in params and "z" not in params


@pytest.mark.parametrize("make", [QueryParams, FormData])
def test_equal_when_every_key_has_the_same_values_in_the_same_order(make: type) -> None:
    # The order between different keys does not count (0.1.0's FormData said unequal)...
    assert make([("a", "1"), ("b", "2")]) == make([("b", "2"), ("a", "1")])
    # ...the order of one key's values does (0.1.0's QueryParams said equal).
    assert make([("a", "1"), ("a", "2")]) != make([("a", "2"), ("a", "1")])
    assert make([("a", "1"), ("a", "1")]) != make([("a", "1")])
    assert make([("a", "1"), ("b", "2"), ("a", "3")]) == make([("a", "1"), ("a", "3"), ("b", "2")])


def test_against_a_plain_mapping_the_last_values_count() -> None:
    assert QueryParams("a=1&a=2") == {"a": "2"}
    assert QueryParams("a=1&a=2") != {"a": "1"}
    assert FormData([("a", "1"), ("a", "2")]) == {"a": "2"}
    assert QueryParams("a=1") != ["a", "1"]


def test_query_params_and_form_data_compare_by_content() -> None:
    assert QueryParams("a=1&b=2") == FormData([("b", "2"), ("a", "1")])


def test_files_compare_by_identity() -> None:
    upload = UploadFile(filename="a.txt")
    assert FormData([("f", upload)]) == FormData([("f", upload)])
    assert FormData([("f", upload)]) != FormData([("f", UploadFile(filename="a.txt"))])


def test_multidicts_are_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(QueryParams("a=1"))
    with pytest.raises(TypeError):
        hash(FormData())
