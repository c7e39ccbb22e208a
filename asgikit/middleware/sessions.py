"""PLACEHOLDER: replaced by its issue."""


class SessionMiddleware:
    pass
