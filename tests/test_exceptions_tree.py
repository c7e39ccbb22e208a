"""Every exception asgikit raises at users derives from AsgikitError, is listed in
asgikit.exceptions' docstring, and keeps its old import paths."""

from __future__ import annotations

import asgikit
import asgikit.exceptions
import asgikit.serving
import asgikit.testing
import asgikit.websockets
from asgikit.exceptions import AsgikitError

PUBLIC_EXCEPTIONS = {
    "HTTPException": asgikit.exceptions,
    "ClientDisconnect": asgikit.exceptions,
    "NoMatchFound": asgikit.exceptions,
    "WebSocketDisconnect": asgikit.exceptions,
    "RangeNotSatisfiable": asgikit.exceptions,
    "Overloaded": asgikit.serving,
    "QueueTimeout": asgikit.serving,
    "WebSocketDenialResponse": asgikit.testing,
}


def test_every_public_exception_derives_from_the_base_and_is_documented() -> None:
    doc = asgikit.exceptions.__doc__ or ""
    for name, module in PUBLIC_EXCEPTIONS.items():
        cls = getattr(module, name)
        assert issubclass(cls, AsgikitError), name
        assert name in doc, f"{name} is not listed in asgikit.exceptions"


def test_old_import_paths_keep_working() -> None:
    assert asgikit.WebSocketDisconnect is asgikit.exceptions.WebSocketDisconnect
    assert asgikit.websockets.WebSocketDisconnect is asgikit.exceptions.WebSocketDisconnect
    assert asgikit.HTTPException is asgikit.exceptions.HTTPException
    assert issubclass(asgikit.serving.Overloaded, asgikit.HTTPException)


def test_no_exception_class_is_defined_outside_the_tree() -> None:
    """Public modules define no exception of their own outside asgikit.exceptions,
    except the test client's (it needs httpx)."""
    modules = [asgikit, asgikit.websockets, asgikit.serving, asgikit.testing]
    for module in modules:
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                assert issubclass(value, AsgikitError), f"{module.__name__}.{name}"
