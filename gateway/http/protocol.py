"""The HTTP/1.1 protocol the gateway is served with: uvicorn's h11 protocol, except that its
own answer to a request it cannot parse (given before any route runs) has the gateway's JSON
error body: 431 `HEADERS_TOO_LARGE` for a request head past h11's limit, else 400
`BAD_REQUEST`."""

from __future__ import annotations

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.errors import error_body

# What h11 buffers of a request head before it gives up (uvicorn's default is h11's).
_HEAD_LIMIT = 16 * 1024


class GatewayH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size or _HEAD_LIMIT
        if len(self.conn.trailing_data[0]) > limit:
            status, body = 431, error_body("HEADERS_TOO_LARGE", f"the request head is over {limit} bytes")
        else:
            status, body = 400, error_body("BAD_REQUEST", "the request is not valid HTTP/1.1")
        content = orjson.dumps(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=content), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
