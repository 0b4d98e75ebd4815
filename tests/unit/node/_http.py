"""A raw HTTP/1.1 client for the local API tests: it sends exactly the bytes it is given (an HTTP
library would refuse or repair what these tests need to send) and parses what comes back."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Bound on every socket operation: only stops a hang, never a timed assert.
HANG_S = 60.0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def problem(self) -> dict[str, Any]:
        """The problem+json document (asserts the media type and the status inside it)."""
        assert self.content_type == "application/problem+json", (self.status, self.headers)
        doc = json.loads(self.body)
        assert isinstance(doc, dict)
        assert doc["status"] == self.status, doc
        return doc


def request_bytes(
    method: str,
    target: bytes | str,
    headers: Sequence[tuple[bytes | str, bytes | str]] = (),
    body: bytes | None = None,
) -> bytes:
    """A request with ``Host`` and ``Connection: close``; ``Content-Length`` when ``body``."""
    lines = [f"{method} ".encode() + _b(target) + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [_b(name) + b": " + _b(value) for name, value in headers]
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def exchange(port: int, data: bytes) -> Reply:
    """Send ``data``, read the answer: the head, then the body until the server closes (an event
    stream's body is not read: the head says what it is)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_S) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionAbortedError(f"the server closed without an answer: {received!r}")
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        if headers.get("content-type", "").startswith("text/event-stream"):
            return Reply(status, headers, body)
        # Up to Content-Length when there is one (a server may linger before closing, reading
        # and discarding what a slow client still sends), else until the server closes.
        length = int(headers["content-length"]) if "content-length" in headers else None
        while length is None or len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return Reply(status, headers, body)
