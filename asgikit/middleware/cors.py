"""PLACEHOLDER: replaced by its issue."""


class CORSMiddleware:
    pass
