"""`FormLimits`: the limits of one form parse, with their defaults written once."""

from __future__ import annotations

import dataclasses
import functools

__all__ = ["DEFAULT_LIMITS", "FormLimits", "form_limits"]


@dataclasses.dataclass(frozen=True)
class FormLimits:
    """How much of a form `Request.form` accepts; every value a non-negative ``int``.

    ``max_files``/``max_fields`` cap the number of file parts and of other fields,
    ``max_part_size`` the bytes of one non-file field, ``max_file_size`` (``None``: no
    cap) the bytes of one file, ``max_size`` (``None``: no cap) the whole body. A
    negative or non-``int`` value raises `ValueError` when the object is built.
    """

    max_files: int = 1000
    max_fields: int = 1000
    max_part_size: int = 1_048_576
    max_file_size: int | None = None
    max_size: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{field.name} must be a non-negative int, not {value!r}")


DEFAULT_LIMITS = FormLimits()
"""The limits `Request.form` applies when given none (its keyword defaults read these)."""


@functools.lru_cache(maxsize=64)
def form_limits(
    max_files: int,
    max_fields: int,
    max_part_size: int,
    max_file_size: int | None,
    max_size: int | None,
) -> FormLimits:
    """`FormLimits(...)`, built once per distinct set of values (they are immutable).

    `Request.form` calls it for every form: endpoints use a handful of fixed limits,
    and checking them again on every request would cost more than the lookup.
    """
    return FormLimits(max_files, max_fields, max_part_size, max_file_size, max_size)
