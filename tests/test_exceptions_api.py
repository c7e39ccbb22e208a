"""`HTTPException` as handlers and logs see it."""

from __future__ import annotations

from asgikit import HTTPException


def test_detail_defaults_to_the_reason_phrase_or_nothing_for_unknown_codes() -> None:
    assert HTTPException(404).detail == "Not Found"
    assert HTTPException(599).detail == ""  # no standard phrase: no invented one


def test_str_and_repr_carry_status_and_detail() -> None:
    error = HTTPException(503, "model loading", headers={"Retry-After": "5"})
    assert str(error) == "503: model loading"
    assert repr(error) == "HTTPException(status_code=503, detail='model loading')"
    assert error.headers == {"Retry-After": "5"}
    assert HTTPException(400, headers={}).headers is None
