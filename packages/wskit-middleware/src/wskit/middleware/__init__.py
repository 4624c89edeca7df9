"""wskit-middleware: see what a running wskit server does.

::

    from wskit.middleware import bearer_auth, has_role, require, with_logging
    from wskit.middleware.prometheus import add_metrics_route, with_metrics   # [prometheus]
    from wskit.middleware.tracing import with_tracing                         # [otel]

    router.plugin(with_tracing()).plugin(with_metrics()).plugin(with_logging())
    router.on(Ban, ban, middleware=[require(has_role("admin"))])
    app = create_app(router, authenticate=bearer_auth(verify_token))
    add_metrics_route(app)

Each piece is ordinary router middleware plus lifecycle hooks and observers,
installed by a plugin: structured logging (:mod:`wskit.middleware.logs`),
OpenTelemetry tracing (:mod:`wskit.middleware.tracing`, extra ``otel``),
Prometheus metrics (:mod:`wskit.middleware.prometheus`, extra ``prometheus``)
and auth helpers (:mod:`wskit.middleware.auth`). This module imports neither
extra; import tracing and metrics from their modules.
"""

from __future__ import annotations

from wskit.middleware.auth import (
    Check,
    Verify,
    bearer_auth,
    bearer_token,
    data_field,
    has_role,
    has_scope,
    require,
)
from wskit.middleware.logs import DEFAULT_FIELDS, FIELDS, RequestLogging, with_logging

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FIELDS",
    "FIELDS",
    "Check",
    "RequestLogging",
    "Verify",
    "bearer_auth",
    "bearer_token",
    "data_field",
    "has_role",
    "has_scope",
    "require",
    "with_logging",
]
