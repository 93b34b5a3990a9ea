"""The HTTP layer in front of Gradio: headers, cross-origin writes, request sizes, rates.

``SecurityMiddleware`` wraps the whole app (an ASGI middleware, so it also sees Gradio's
own routes):

- every response gets ``X-Content-Type-Options: nosniff``, a Content-Security-Policy
  whose ``frame-ancestors`` allows the page itself and the Hub's Space embedding, and a
  referrer policy;
- a request that changes state (POST, PUT, DELETE, PATCH) from a foreign origin is
  refused: a browser sends a form upload to any site without asking, CORS or not;
- JSON bodies of the queue and call routes are limited in size (an inline ``data:``
  URL could otherwise carry any amount past the upload limit), and a ``fn_index``
  that names no event is a 422, not a server error;
- ``/call/<name>`` serves the public API only: Gradio would also run a private event
  named there (the page's own events reach the queue by ``fn_index`` instead);
- each client (by address) has a token bucket for the costly routes (upload, queue,
  call), so one client cannot fill the queue or the disk at full speed; and uploads are
  refused (507) while the temp folder holds more than ``UNET_TEMP_MAX_MB``, whoever
  sends them, until the TTL cleanup has made room.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unet_hub.app.settings import AppSettings

#: JSON bodies of the queue and call routes above this size are refused: a run's
#: payload is a file reference and a threshold, well under 1 kB.
MAX_JSON_BODY = 64 * 1024
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: The routes that cost the server work or disk (under Gradio's /gradio_api prefix):
#: the queue, uploads, the named API, and the direct routes of events that skip the queue.
COSTLY = ("/queue/join", "/upload", "/call/", "/run/", "/api/")


def content_security_policy(frame_ancestors: Iterable[str]) -> str:
    """The CSP of every response: who may frame the page; no plugins; no base rewrite."""
    return f"frame-ancestors {' '.join(frame_ancestors)}; object-src 'none'; base-uri 'self'"


class TokenBuckets:
    """One token bucket per client: ``burst`` requests at once, then ``per_minute``."""

    def __init__(self, burst: int, per_minute: float, max_clients: int = 10_000):
        self.burst, self.rate, self.max_clients = burst, per_minute / 60.0, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> bool:
        """Spend one token of ``client``; False when it has none left."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            self._buckets[client] = (tokens - 1 if allowed else tokens, now)
            while len(self._buckets) > self.max_clients:  # forget the longest idle
                self._buckets.popitem(last=False)
        return allowed


class TempSpace:
    """Whether ``folder`` holds more than ``max_bytes`` in files, looked at most once a
    ``seconds``."""

    def __init__(self, folder: Path, max_bytes: int, seconds: float = 1.0):
        self.folder, self.max_bytes, self.seconds = folder, max_bytes, seconds
        self._checked, self._full = -float("inf"), False

    def _bytes(self) -> int:
        total = 0
        for path in self.folder.rglob("*"):
            with contextlib.suppress(OSError):  # deleted meanwhile by the cleanup
                if path.is_file():
                    total += path.stat().st_size
        return total

    def full(self) -> bool:
        now = time.monotonic()
        if now - self._checked > self.seconds:
            self._checked = now
            self._full = self.folder.is_dir() and self._bytes() > self.max_bytes
        return self._full


def same_origin(origin: str, headers: Headers, own_hosts: Iterable[str] = ()) -> bool:
    """Whether ``origin`` is the host the request was sent to (directly, via a proxy, or
    one of ``own_hosts``, e.g. the Space's own host name)."""
    netloc = urlsplit(origin).netloc.lower()
    hosts = {headers.get("host", ""), headers.get("x-forwarded-host", ""), *own_hosts}
    return bool(netloc) and netloc in {h.lower() for h in hosts if h}


def _call_name(path: str) -> str:
    """The endpoint name of a ``/call/<name>`` or ``/call/v2/<name>`` route."""
    name = path.split("/call/", 1)[1].strip("/")
    return name.removeprefix("v2/")


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class SecurityMiddleware:
    """See the module doc. ``event_ids`` gives the ``fn_index`` values the app has and
    ``public_api`` the names of its public endpoints."""

    def __init__(
        self,
        app: ASGIApp,
        settings: AppSettings,
        event_ids: Callable[[], set[int]],
        public_api: Callable[[], set[str]],
        temp_folder: Path,
    ):
        self.app, self.event_ids, self.public_api = app, event_ids, public_api
        self.temp_space = TempSpace(temp_folder, settings.temp_max_bytes)
        self.buckets = TokenBuckets(settings.rate_burst, settings.rate_per_minute)
        # A Space's proxy may rewrite Host; the Hub tells the Space its own host names
        # (SPACE_HOST, a comma-separated list when a custom domain is used).
        self.own_hosts = [h.strip() for h in os.environ.get("SPACE_HOST", "").split(",")]
        self.headers = {
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": content_security_policy(settings.frame_ancestors),
            "Referrer-Policy": "strict-origin-when-cross-origin",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path, method = scope["path"], scope["method"]
        refusal = None
        origin = headers.get("origin")
        if (
            method not in SAFE_METHODS
            and origin
            and not same_origin(origin, headers, self.own_hosts)
        ):
            refusal = _refuse(403, "cross-origin requests that change state are refused")
        elif method == "POST" and any(part in path for part in COSTLY):
            client = scope.get("client") or ("unknown", 0)
            if not self.buckets.take(client[0]):
                refusal = _refuse(429, "too many requests from this client; wait a minute")
            elif "/upload" in path and self.temp_space.full():
                refusal = _refuse(507, "the server's upload space is full; try again later")
            elif "/call/" in path and _call_name(path) not in self.public_api():
                refusal = _refuse(404, "no such API endpoint")
            elif "/upload" not in path:
                refusal, receive = await self._check_json(receive)
        if refusal is not None:
            await refusal(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    def _with_headers(self, send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(self.headers)
            await send(message)

        return send_with_headers

    async def _check_json(self, receive: Receive) -> tuple[JSONResponse | None, Receive]:
        """Read a queue/call body (refused over ``MAX_JSON_BODY`` or with an unknown
        ``fn_index``) and return a ``receive`` that replays it."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_JSON_BODY:
                return _refuse(413, f"request body over {MAX_JSON_BODY // 1024} kB"), receive
        body = b"".join(chunks)
        try:
            fn_index = json.loads(body).get("fn_index") if body else None
        except (ValueError, AttributeError):
            fn_index = None  # Gradio answers malformed JSON itself
        if fn_index is not None and (
            not isinstance(fn_index, int) or fn_index not in self.event_ids()
        ):
            return _refuse(422, "fn_index names no event of this app"), receive
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return None, replay
