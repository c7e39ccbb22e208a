"""Pure ASGI middleware shipped with asgikit.

Declare them with `asgikit.Middleware`: ``Router(middleware=[Middleware(GZipMiddleware)])``.
"""

from asgikit._chain import Middleware
from asgikit.middleware.concurrency import ConcurrencyLimitMiddleware, ConcurrencyStats
from asgikit.middleware.cors import CORSMiddleware
from asgikit.middleware.gzip import GZipMiddleware
from asgikit.middleware.httpsredirect import HTTPSRedirectMiddleware
from asgikit.middleware.metrics import MetricsMiddleware
from asgikit.middleware.sessions import SessionMiddleware
from asgikit.middleware.timeout import TimeoutMiddleware
from asgikit.middleware.trustedhost import TrustedHostMiddleware

__all__ = [
    "CORSMiddleware",
    "ConcurrencyLimitMiddleware",
    "ConcurrencyStats",
    "GZipMiddleware",
    "HTTPSRedirectMiddleware",
    "MetricsMiddleware",
    "Middleware",
    "SessionMiddleware",
    "TimeoutMiddleware",
    "TrustedHostMiddleware",
]
