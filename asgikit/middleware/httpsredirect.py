"""PLACEHOLDER: replaced by its issue."""


class HTTPSRedirectMiddleware:
    pass
