"""PLACEHOLDER: replaced by its issue."""


class GZipMiddleware:
    pass
