"""Limits that hold the service against slow or hostile clients, as pure ASGI middleware.

uvicorn caps idle keep-alive connections (`timeout_keep_alive`) and concurrent connections
(`limit_concurrency`, answered with 503) but has no timeout for reading a request body: a
client that declares 100 bytes and sends 10 holds a connection and a worker slot for as long
as it likes. `BodyTimeoutMiddleware` bounds the whole body read and answers 408.
"""

from __future__ import annotations

import asyncio
import time

from starlette.exceptions import HTTPException


class BodyTimeout(HTTPException):
    """The request body did not arrive in time: 408, and the connection is closed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"request body not received within {seconds:g} s (serve.body_timeout_s)",
            headers={"Connection": "close"},
        )


class BodyTimeoutMiddleware:
    """Every request's body must arrive within `seconds` of its first read.

    Only reads of the body are timed: once the last body chunk is in, `receive` is the plain
    one again (a response may wait on it for a disconnect as long as it needs).
    """

    def __init__(self, app, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: list[float] = []
        done = [False]

        async def timed_receive():
            if done[0]:
                return await receive()
            if not deadline:
                deadline.append(time.monotonic() + self.seconds)
            left = deadline[0] - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except TimeoutError:
                raise BodyTimeout(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done[0] = True
            return message

        await self.app(scope, timed_receive, send)
