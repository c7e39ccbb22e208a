"""PLACEHOLDER: replaced by its issue."""


class TimeoutMiddleware:
    pass
