"""Who may call `mft serve`: the API key (`--api-key` / MFT_API_KEY) and CORS (`--allowed-origins` ...).

As vLLM's server does: with a key set, every request whose path starts with
/v1 must carry `Authorization: Bearer KEY` (else 401 with OpenAI's error
JSON); other paths (/health, /metrics, /ping, /version, /tokenize, ...) and
CORS preflights (OPTIONS) stay open. CORS is Starlette's middleware, outside
the key check, so a browser also reads the 401.
"""

from __future__ import annotations

import hmac
import json

from starlette.datastructures import Headers


class ApiKeyMiddleware:
    """Pure ASGI middleware (streams pass through untouched)."""

    def __init__(self, app, api_keys: list[str]):
        self.app = app
        self.keys = [k.encode("utf-8") for k in api_keys]

    def authorized(self, scope) -> bool:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            return True
        if not scope["path"].startswith("/v1"):
            return True
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        token = token.strip().encode("utf-8")
        # compare against every key (no early exit): the time taken does not tell which key came close
        return scheme.lower() == "bearer" and sum(hmac.compare_digest(token, k) for k in self.keys) > 0

    async def __call__(self, scope, receive, send):
        if self.authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": {"message": "Incorrect or missing API key: send the header 'Authorization: Bearer <key>' "
                                                "with the key mft serve was started with (--api-key or MFT_API_KEY)",
                                     "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})


def middleware(api_keys: list[str] | None, cors: dict | None) -> list:
    """Starlette middleware list (outermost first): CORS, then the key check."""
    from starlette.middleware import Middleware

    stack = []
    if cors is not None:
        from starlette.middleware.cors import CORSMiddleware

        stack.append(Middleware(CORSMiddleware, allow_origins=cors["origins"], allow_methods=cors["methods"],
                                allow_headers=cors["headers"], allow_credentials=cors["credentials"]))
    if api_keys:
        stack.append(Middleware(ApiKeyMiddleware, api_keys=api_keys))
    return stack
