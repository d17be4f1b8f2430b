"""Real local stand-ins for notification services: an HTTP receiver for Apprise's ``json://`` and an
SMTP server (aiosmtpd) for ``mailto://``. Each records what arrived; the HTTP one can be stopped
and started again on its port (a service that is down), or hold its answer (a send in flight)."""

from __future__ import annotations

import email
import json
import threading
import time
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pm_engine.ops.cluster import free_port


@dataclass
class Received:
    title: str
    body: str
    at: float


class JsonReceiver:
    """``json://`` target: POSTs of {"title", "message", "type"} recorded in order."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.port = free_port()
        self.messages: list[Received] = []
        self.delay_s = delay_s
        self.on_receive: Optional[Callable[[Received], None]] = None
        self.headers: list[dict[str, str]] = []
        self._server: Optional[ThreadingHTTPServer] = None

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def start(self) -> "JsonReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                doc: dict[str, Any] = json.loads(raw or b"{}")
                message = Received(str(doc.get("title", "")), str(doc.get("message", "")), time.monotonic())
                receiver.messages.append(message)
                receiver.headers.append(dict(self.headers))
                if receiver.on_receive is not None:
                    receiver.on_receive(message)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return True
            time.sleep(0.05)
        return len(self.messages) >= count


class SmtpReceiver:
    """``mailto://`` target: a real SMTP server (aiosmtpd) that takes a login and records each mail."""

    def __init__(self, user: str = "trader", password: str = "smtp-pass-S3CRET") -> None:
        self.port = free_port()
        self.user, self.password = user, password
        self.mails: list[Message] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                receiver.mails.append(email.message_from_bytes(envelope.original_content or envelope.content))
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            return AuthResult(success=getattr(data, "password", b"") == password.encode())

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate,
                                      auth_require_tls=False)

    def url(self) -> str:
        return (f"mailto://{self.user}:{self.password}@127.0.0.1:{self.port}"
                "?from=pm-engine@example.com&to=trader@example.com")

    def start(self) -> "SmtpReceiver":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.mails]
