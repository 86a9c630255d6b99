"""Who may call what: the one home of the bearer-token check and of the open/repository paths.

Used by the HTTP middleware (api/http/middleware.py), KServe's V1/V2 entry (api/kserve/model.py)
and the gRPC interceptor (api/kserve/grpc_guard.py), so REST and gRPC refuse the same callers
the same way.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from predictor.errors import AuthenticationError

# Probes and scrapes stay open (SPEC "Health"): liveness, readiness, model metadata, metrics.
OPEN_PATHS = re.compile(r"^(/|/metrics|/health|/v2|/v2/health/(live|ready)"
                        r"|/v2/models/[^/]+(/versions/[^/]+)?(/ready)?)$")
# KServe's model repository extension (REST and gRPC): load/unload a model by name. An unload
# takes the model offline until restart, so it is off unless --repository_api turns it on.
REPOSITORY_PATHS = re.compile(r"^/v2/repository(/|$)")
REPOSITORY_DISABLED = ("The model repository API (load/unload) is disabled on this server; "
                       "start it with --repository_api true (and --api_token) to allow it.")


def check_token(headers: Mapping[str, str], token: str | None) -> None:
    """Raise 401 unless ``authorization: Bearer <token>`` matches (constant-time)."""
    if not token:
        return
    value = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, given = value.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        raise AuthenticationError("Missing or invalid bearer token (send it as "
                                  "'Authorization: Bearer <token>'; tokens in the URL are not "
                                  "accepted).", code="invalid_api_key",
                                  headers={"WWW-Authenticate": "Bearer"})
