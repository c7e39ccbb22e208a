"""Property tests (hypothesis): a cookie the app sets comes back as it was set.

`Response.set_cookie` writes ``Set-Cookie``; a browser sends back the ``name=value``
part unchanged; `parse_cookie_header` must give the app the very value it stored,
whatever characters it holds, or `set_cookie` must refuse it with `ValueError`.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgikit import Response
from asgikit._http import parse_cookie_header

# Attribute names http.cookies.SimpleCookie will not take as cookie names.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cookie_names = st.text(
    string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=12
)
cookie_values = st.one_of(
    st.text(st.characters(max_codepoint=255), max_size=30),  # what a header can carry
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
)


def sent_back(set_cookie: str) -> str:
    """The ``name=value`` pair a browser returns in ``Cookie`` for this ``Set-Cookie``."""
    pair = set_cookie
    # The value may be a quoted string holding ';' (escaped octets keep it one token).
    if pair.partition("=")[2].startswith('"'):
        name, _, rest = pair.partition("=")
        end = 1
        while rest[end] != '"':
            end += 2 if rest[end] == "\\" else 1
        return f"{name}={rest[: end + 1]}"
    return pair.split(";", 1)[0]


@SETTINGS
@given(
    name=cookie_names,
    value=cookie_values,
    others=st.dictionaries(cookie_names, cookie_values, max_size=3),
)
def test_a_cookie_comes_back_as_it_was_set(name: str, value: str, others: dict[str, str]) -> None:
    response = Response()
    try:
        response.set_cookie(name, value)
    except ValueError:
        # Refused up front, never a corrupt header: only a value that is not Latin-1.
        assert any(ord(char) > 255 for char in value)
        return
    (set_cookie,) = response.headers.getlist("set-cookie")
    header = sent_back(set_cookie)
    assert parse_cookie_header(header) == {name: value}
    # Among other cookies (each one set the same way), it still comes back intact.
    pairs = [header]
    for other_name, other_value in others.items():
        if other_name == name:
            continue
        other = Response()
        try:
            other.set_cookie(other_name, other_value)
        except ValueError:
            continue
        pairs.append(sent_back(other.headers.getlist("set-cookie")[0]))
    assert parse_cookie_header("; ".join(pairs))[name] == value


@pytest.mark.parametrize("name", ["version", "path", "comment", "domain", "expires"])
def test_a_cookie_named_like_an_attribute_can_be_set(name: str) -> None:
    response = Response()
    response.set_cookie(name, "2")
    (set_cookie,) = response.headers.getlist("set-cookie")
    assert parse_cookie_header(sent_back(set_cookie)) == {name: "2"}
