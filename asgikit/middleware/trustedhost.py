"""PLACEHOLDER: replaced by its issue."""


class TrustedHostMiddleware:
    pass
