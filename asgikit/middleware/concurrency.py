"""PLACEHOLDER: replaced by its issue."""


class ConcurrencyLimitMiddleware:
    pass
