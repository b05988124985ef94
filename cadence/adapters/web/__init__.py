"""The HTTP service: what comes back from people and providers (DESIGN.md, adapters in).

Tracking pixels, signed click redirects and one-click unsubscribes from the links the live
sink puts in each email (`cadence.adapters.tracking`), provider webhooks, authenticated
event ingestion and the in-app inbox, all as calls on one `Engine`. `ServiceApp` is a
plain ASGI application; `serve_http` runs it under Hypercorn on Trio beside the engine.
"""

from cadence.adapters.web.app import ServiceApp
from cadence.adapters.web.server import serve_http
from cadence.adapters.web.settings import ServiceSettings

__all__ = ["ServiceApp", "ServiceSettings", "serve_http"]
