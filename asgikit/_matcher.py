"""Path templates and the segment tree that matches request paths against them.

Pure functions and data, no ASGI: a template such as ``/users/{id:int}/files/{rest:path}``
compiles to a list of segments, and a `SegmentTree` holds every route's segments so a
lookup walks one tree level per path segment, whatever the number of routes.

Precedence at each level is deterministic: a static segment beats a segment mixing text
and parameters, which beats a typed parameter (``int``, ``float``, ``uuid``), which beats
``str``, which beats ``path``; a mount at a node is tried after everything below it.
Equals are tried in registration order; a failed branch backtracks to the next.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

__all__ = [
    "CONVERTERS",
    "Converter",
    "SegmentTree",
    "Template",
    "compile_template",
    "route_path",
]

T = TypeVar("T")  # what a leaf holds (the router's per-path entry)
M = TypeVar("M")  # what a mount point holds
R = TypeVar("R")  # what accept() answers for a usable leaf
K = TypeVar("K")  # what find() passes on to accept()


@dataclass(frozen=True)
class Converter:
    """How a ``{name:kind}`` parameter matches, converts and is written back into a URL."""

    name: str
    pattern: str
    rank: int  # lower is tried first
    convert: Callable[[str], Any]
    to_string: Callable[[Any], str]
    match: Callable[[str], bool]


def _int_to_string(value: Any) -> str:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative int")
    return str(value)


def _float_to_string(value: Any) -> str:
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative number")
    text = repr(float(value))
    if not _FLOAT_RE.fullmatch(text):
        raise ValueError(f"{value!r} cannot be written as a path segment")
    return text


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too large for a float")
    return value


def _str_to_string(value: Any) -> str:
    text = str(value)
    if not text or "/" in text:
        raise ValueError(f"{value!r} must be non-empty and contain no '/'")
    return text


def _uuid_to_string(value: Any) -> str:
    return str(uuid.UUID(str(value)))


_FLOAT_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

CONVERTERS: dict[str, Converter] = {
    "int": Converter(
        "int", "[0-9]+", 2, int, _int_to_string, lambda text: text.isascii() and text.isdigit()
    ),
    "float": Converter(
        "float",
        _FLOAT_RE.pattern,
        2,
        _finite_float,
        _float_to_string,
        lambda text: _FLOAT_RE.fullmatch(text) is not None,
    ),
    "uuid": Converter(
        "uuid",
        _UUID_RE.pattern,
        2,
        uuid.UUID,
        _uuid_to_string,
        lambda text: _UUID_RE.fullmatch(text) is not None,
    ),
    "str": Converter("str", "[^/]+", 3, str, _str_to_string, bool),
    "path": Converter("path", ".*", 4, str, str, lambda text: True),
}

_PARAM_RE = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")
_STATIC, _MIXED, _STR = 0, 1, 3


@dataclass(frozen=True, slots=True)
class Segment:
    """One ``/``-separated piece of a template."""

    text: str  # the template text of the segment
    rank: int  # 0 static, 1 mixed, 2 typed, 3 str, 4 path
    names: tuple[str, ...] = ()
    converters: tuple[Converter, ...] = ()
    regex: re.Pattern[str] | None = None  # mixed segments only

    def match(self, text: str) -> list[tuple[str, Any]] | None:
        """The converted parameters if ``text`` fits this (non-static) segment, else None."""
        # A value can fit the pattern and still not convert (an int of more digits than
        # Python converts, a float too large to be finite): then it is no match, a 404.
        try:
            if self.regex is None:
                converter = self.converters[0]
                if converter.match(text):
                    return [(self.names[0], converter.convert(text))]
                return None
            found = self.regex.fullmatch(text)
            if found is None:
                return None
            return [
                (name, converter.convert(found.group(index + 1)))
                for index, (name, converter) in enumerate(
                    zip(self.names, self.converters, strict=True)
                )
            ]
        except ValueError:
            return None


@dataclass(frozen=True)
class Template:
    """A compiled path template."""

    path: str
    segments: tuple[Segment, ...]
    param_names: frozenset[str]
    converters: dict[str, Converter]

    @property
    def is_static(self) -> bool:
        return all(segment.rank == _STATIC for segment in self.segments)

    def format(self, params: dict[str, Any]) -> str:
        """The path for ``params`` (exactly the template's names), percent-encoded.

        Raises `ValueError` if the names differ or a value does not fit its converter.
        """
        if set(params) != self.param_names:
            raise ValueError("parameter names do not match")
        if not self.param_names:
            return self.path

        def replace(found: re.Match[str]) -> str:
            name = found.group(1)
            converter = self.converters[name]
            text = converter.to_string(params[name])
            if not converter.match(text):
                raise ValueError(f"{params[name]!r} does not fit {{{name}:{converter.name}}}")
            safe = "/:@!$&'()*+,;=~" if converter.name == "path" else ":@!$&'()*+,;=~"
            return quote(text, safe=safe)

        return _PARAM_RE.sub(replace, self.path)


def compile_template(path: str, *, prefix: bool = False) -> Template:
    """Compile ``path`` (must start with ``/``) into segments.

    With ``prefix=True`` (mounts), ``""`` and ``"/"`` mean the root, a trailing ``/`` is
    dropped, and ``path`` parameters are refused. Unknown converters, repeated names
    and a ``path`` parameter that is not the whole last segment raise `ValueError`; a
    ``path`` that is not a ``str`` raises `TypeError`.
    """
    if not isinstance(path, str):
        raise TypeError(f"route path must be a str, not {type(path).__name__}: {path!r}")
    if prefix:
        path = path.rstrip("/")
        if path == "":
            return Template("", (), frozenset(), {})
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")
    segments: list[Segment] = []
    converters: dict[str, Converter] = {}
    pieces = path[1:].split("/")
    for position, piece in enumerate(pieces):
        params = list(_PARAM_RE.finditer(piece))
        if not params:
            if "{" in piece or "}" in piece:
                raise ValueError(f"route path {path!r}: malformed parameter in {piece!r}")
            segments.append(Segment(piece, _STATIC))
            continue
        names: list[str] = []
        kinds: list[Converter] = []
        for found in params:
            name, kind = found.group(1), found.group(2) or "str"
            if kind not in CONVERTERS:
                known = ", ".join(CONVERTERS)
                raise ValueError(
                    f"route path {path!r}: unknown converter {kind!r} (known: {known})"
                )
            if name in converters:
                raise ValueError(f"route path {path!r}: parameter {name!r} appears twice")
            converters[name] = CONVERTERS[kind]
            names.append(name)
            kinds.append(CONVERTERS[kind])
        whole = len(params) == 1 and params[0].group(0) == piece
        if "path" in (kind.name for kind in kinds):
            if not whole or position != len(pieces) - 1:
                raise ValueError(
                    f"route path {path!r}: a {{name:path}} parameter must be the whole last segment"
                )
            if prefix:
                raise ValueError(f"mount path {path!r} cannot contain a path parameter")
        if whole:
            segments.append(Segment(piece, kinds[0].rank, (names[0],), (kinds[0],)))
        else:
            pattern = ""
            last = 0
            for found, kind in zip(params, kinds, strict=True):
                pattern += re.escape(piece[last : found.start()]) + f"({kind.pattern})"
                last = found.end()
            pattern += re.escape(piece[last:])
            segments.append(Segment(piece, _MIXED, tuple(names), tuple(kinds), re.compile(pattern)))
    return Template(path, tuple(segments), frozenset(converters), converters)


def route_path(path: str, root_path: str) -> str:
    """The part of ``path`` below ``root_path`` (ASGI: ``path`` includes ``root_path``)."""
    if not root_path or not path.startswith(root_path):
        return path
    rest = path[len(root_path) :]
    if rest == "" or rest[0] == "/":
        return rest
    return path


@dataclass(slots=True)
class _Node(Generic[T, M]):
    static: dict[str, _Node[T, M]] = field(default_factory=dict)
    # (segment, its name if it is a whole-segment str parameter, child), by rank.
    dynamic: list[tuple[Segment, str | None, _Node[T, M]]] = field(default_factory=list)
    catch_all: list[tuple[str, T]] = field(default_factory=list)  # {name:path} leaves
    leaf: T | None = None
    mounts: list[M] = field(default_factory=list)
    # Whether anything but a static child can match below: if not, a lookup just walks
    # on (nothing to come back to), without a call per level.
    branches: bool = False
    # (name, child) when the only thing but static children is one whole-segment str
    # parameter (no other parameter, catch-all or mount): a segment no static child
    # takes has then nowhere else to go, so a lookup walks on here too.
    sole: tuple[str, _Node[T, M]] | None = None

    def settle(self) -> None:
        """Recompute `branches` and `sole` after a child, leaf or mount was added."""
        self.branches = bool(self.dynamic or self.catch_all or self.mounts)
        self.sole = None
        if len(self.dynamic) == 1 and not self.catch_all and not self.mounts:
            _, str_name, child = self.dynamic[0]
            if str_name is not None:
                self.sole = (str_name, child)


class SegmentTree(Generic[T, M]):
    """Routes by path segment: one dict lookup per static segment.

    ``insert(template, make_leaf)`` returns the leaf for a template (creating it), so
    several routes on one path share a leaf; ``find(path, accept, key)`` returns the
    best leaf that ``accept(leaf, key)`` takes, or a mount.
    """

    def __init__(self) -> None:
        self._root: _Node[T, M] = _Node()
        self.static: dict[str, T] = {}  # fully static paths: one dict lookup

    def insert(self, template: Template, make_leaf: Callable[[], T]) -> T:
        node = self._root
        segments = template.segments
        for index, segment in enumerate(segments):
            if segment.rank == _STATIC:
                node = node.static.setdefault(segment.text, _Node())
            elif segment.converters[0].name == "path":
                assert index == len(segments) - 1
                name = segment.names[0]
                for existing_name, existing in node.catch_all:
                    if existing_name == name:
                        return existing
                leaf = make_leaf()
                node.catch_all.append((name, leaf))
                node.settle()
                return leaf
            else:
                node = _dynamic_child(node, segment)
        if node.leaf is None:
            node.leaf = make_leaf()
            if template.is_static:
                self.static[template.path] = node.leaf
        return node.leaf

    def insert_mount(self, template: Template, mount: M) -> None:
        node = self._root
        for segment in template.segments:
            if segment.rank == _STATIC:
                node = node.static.setdefault(segment.text, _Node())
            else:
                node = _dynamic_child(node, segment)
        node.mounts.append(mount)
        node.settle()

    def find(
        self, path: str, accept: Callable[[T, K], R | None], key: K
    ) -> tuple[R | M, dict[str, Any], int] | None:
        """The best match for ``path`` (which starts with ``/``), or None.

        Leaves are offered to ``accept(leaf, key)`` best first; the first non-None answer wins and
        comes back as ``(answer, params, 0)``. A mount that matches before that comes
        back as ``(mount, params, characters of the path it consumed)``. An ``accept``
        that always answers None visits every matching leaf (to list allowed methods).
        """
        if not path or path[0] != "/":
            return None
        parts = path.split("/")  # parts[0] is the "" before the leading "/"
        return _find(self._root, parts, 1, len(parts), {}, accept, key)


def _dynamic_child(node: _Node[T, M], segment: Segment) -> _Node[T, M]:
    for existing, _, child in node.dynamic:
        if existing == segment:
            return child
    child = _Node()
    str_name = segment.names[0] if segment.rank == _STR else None
    node.dynamic.append((segment, str_name, child))
    node.dynamic.sort(key=lambda entry: entry[0].rank)  # stable: equals keep their order
    node.settle()
    return child


def _find(
    node: _Node[T, M],
    parts: list[str],
    index: int,
    end: int,
    params: dict[str, Any],
    accept: Callable[[T, K], R | None],
    key: K,
) -> tuple[R | M, dict[str, Any], int] | None:
    # Walk on without a call while there is nothing to come back to: through static
    # segments, and through a node's sole str parameter when no static child takes the
    # segment. The parameters set on the way (the last ones in ``params``) are taken
    # out again if nothing matches.
    walked_from = len(params)
    while index < end:
        part = parts[index]
        child = node.static.get(part)
        if child is not None:
            if node.branches:
                break  # a static child first, then the other ways: `_branch`
            node = child
        else:
            sole = node.sole
            if sole is None or not part:
                if node.branches:
                    break
                _unwalk(params, walked_from)
                return None
            name, node = sole
            params[name] = part
        index += 1
    if index == end:
        if node.leaf is not None:
            answer = accept(node.leaf, key)
            if answer is not None:
                return answer, params, 0
        _unwalk(params, walked_from)
        return None
    # A node with several ways on, in precedence order; each tried branch backtracks.
    part = parts[index]
    last = index + 1 == end  # the last segment: check the child's leaf without a call
    child = node.static.get(part)
    if child is not None:
        if last:
            if child.leaf is not None:
                answer = accept(child.leaf, key)
                if answer is not None:
                    return answer, params, 0
        else:
            found = _find(child, parts, index + 1, end, params, accept, key)
            if found is not None:
                return found
    for segment, str_name, child in node.dynamic:
        if str_name is not None:  # the common case, inlined: any non-empty segment
            if not part:
                continue
            params[str_name] = part
            if last:
                if child.leaf is not None:
                    answer = accept(child.leaf, key)
                    if answer is not None:
                        return answer, params, 0
            else:
                found = _find(child, parts, index + 1, end, params, accept, key)
                if found is not None:
                    return found
            del params[str_name]
            continue
        converted = segment.match(part)
        if converted is not None:
            params.update(converted)
            found = _find(child, parts, index + 1, end, params, accept, key)
            if found is not None:
                return found
            for name, _ in converted:
                del params[name]
    if node.catch_all:
        rest = "/".join(parts[index:])
        for name, leaf in node.catch_all:
            answer = accept(leaf, key)
            if answer is not None:
                params[name] = rest
                return answer, params, 0
    if node.mounts:
        consumed = index - 1 + sum(len(part) for part in parts[:index])
        return node.mounts[0], params, consumed
    _unwalk(params, walked_from)
    return None


def _unwalk(params: dict[str, Any], walked_from: int) -> None:
    # A failed walk: take out the parameters it set (a caller backtracks).
    for name in list(params)[walked_from:]:
        del params[name]
