"""`framegate web`: the live demo in a browser, on localhost.

One port serves both the page (engine/assets/web_demo.html, on a plain GET) and its
WebSocket endpoint (the same path, upgraded). Each connection is one `LiveSession`, the
pipeline `framegate mic` runs, with the browser as its source and its view:

- browser -> server: first a text message `{"sample_rate": 48000}` (the rate the page
  captures at; the stream resamples), then binary messages of mono float32 samples
  (little-endian), any length; text `{"keys": "+"}` turns the compute dial as the
  terminal's keys do; text `{"end": true}` ends the input (so does closing).
- server -> browser: JSON text messages, `{"type": "partial", "text", "status"}` (the
  status line of the terminal demo: compute meter, lag, dropped audio), `{"type":
  "final", "channel", "start", "end", "text"}` (the shape of `transcribe --json`'s
  segments), `{"type": "notice", "text"}`, `{"type": "done", "summary"}` and, for a
  session that cannot go on, `{"type": "error", "message"}` before the server closes.

Receiving never waits for the decoder: blocks go through the session's bounded
`CaptureBuffer`, which drops and counts what a slow decoder cannot take. The server
listens on 127.0.0.1 only, and accepts WebSocket connections from its own page's origin
(or from clients that send no Origin, as scripts do), so another web site open in the
same browser cannot stream to it. websockets (the `web` extra) is imported only here.
"""
from __future__ import annotations

import functools
import json
import os
import queue
import socket
import threading
from http import HTTPStatus
from pathlib import Path

import numpy as np
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from framegate.engine.capture import DEFAULT_CAPACITY_S, CaptureBuffer
from framegate.engine.errors import AudioInputError, FramegateError
from framegate.engine.live import LiveSession
from framegate.engine.live_view import FinalLine
from framegate.engine.recognizer import Recognizer
from framegate.engine.transcript_json import segment_record

PAGE = Path(__file__).parent / "assets" / "web_demo.html"
HOST = "127.0.0.1"
HELLO_TIMEOUT_S = 10.0  # a client that connects and says nothing is dropped
MAX_MESSAGE_BYTES = 2 ** 20  # about 5 s of 48 kHz float32 in one message; the page sends ~20 ms
RATES_HZ = (8000, 384000)


def _hello_sample_rate(message: str | bytes) -> int:
    """The sample rate of the first message, `{"sample_rate": N}`; a FramegateError otherwise."""
    try:
        rate = json.loads(message)["sample_rate"]
    except (TypeError, ValueError, KeyError):
        raise FramegateError('the first message must be {"sample_rate": N}') from None
    if isinstance(rate, bool) or not isinstance(rate, int) or not RATES_HZ[0] <= rate <= RATES_HZ[1]:
        raise FramegateError(f"sample_rate must be an integer in [{RATES_HZ[0]}, {RATES_HZ[1]}] Hz, got {rate!r}")
    return rate


class WebSocketSource:
    """A browser's microphone for a `LiveSession`: its blocks go into a `CaptureBuffer` on a
    receiving thread; it is also the session's key source (`read`), fed by `{"keys": ...}`."""

    def __init__(self, connection: ServerConnection, sample_rate: int,
                 capacity_s: float = DEFAULT_CAPACITY_S) -> None:
        self.sample_rate = sample_rate
        self.buffer = CaptureBuffer(sample_rate, capacity_s)
        self.description = f"the browser ({connection.remote_address[0]}) at {sample_rate} Hz"
        self._connection = connection
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="framegate-web-receive", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _receive(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    message = self._connection.recv(timeout=0.1)
                except TimeoutError:
                    continue
                if isinstance(message, bytes):
                    if len(message) % 4:
                        raise AudioInputError(f"an audio message must hold whole float32 samples; "
                                              f"got {len(message)} bytes")
                    self.buffer.push(np.frombuffer(message, dtype="<f4").astype(np.float32))
                    continue
                try:
                    command = json.loads(message)
                except ValueError:
                    raise FramegateError(f"a text message must be JSON; got {message[:40]!r}") from None
                if not isinstance(command, dict):
                    raise FramegateError(f"a text message must be a JSON object; got {message[:40]!r}")
                if command.get("end"):
                    return
                self._keys.put(str(command.get("keys", "")))
        except ConnectionClosed:
            pass  # the page went away: what arrived is still transcribed
        except FramegateError as e:
            self.buffer.finish(e)
        finally:
            self.buffer.finish()

    def read(self, timeout_s: float) -> str:
        """Keys the page sent, waiting up to `timeout_s` ('' if none)."""
        try:
            return self._keys.get(timeout=timeout_s)
        except queue.Empty:
            return ""

    def stop(self) -> None:
        """Stop receiving (idempotent); the connection stays open for the last messages."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.buffer.finish()


class WebView:
    """A session's view as JSON text messages to the page (see the module docstring)."""

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection

    def _send(self, **message: object) -> None:
        self._connection.send(json.dumps(message, ensure_ascii=False))

    def show_status(self, status: str, partial: str) -> None:
        self._send(type="partial", text=partial, status=status)

    def show_final(self, line: FinalLine) -> None:
        self._send(type="final", **segment_record(line))

    def show_notice(self, text: str) -> None:
        self._send(type="notice", text=text)

    def close(self, summary: str) -> None:
        self._send(type="done", summary=summary)


def _session(recognizer: Recognizer, connection: ServerConnection) -> None:
    """One browser connection: one stream, from the hello message to the end of its audio."""
    try:
        source = WebSocketSource(connection, _hello_sample_rate(connection.recv(timeout=HELLO_TIMEOUT_S)))
        LiveSession(recognizer, source, WebView(connection), None, keys=source).run()
    except FramegateError as e:
        try:
            connection.send(json.dumps({"type": "error", "message": str(e)}))
            connection.close(code=1008, reason="refused")  # policy violation: input the server cannot use
        except ConnectionClosed:
            pass
    except (ConnectionClosed, TimeoutError):
        pass  # the page went away, or never said hello


def _page(connection: ServerConnection, request: Request) -> Response | None:
    """The page for a plain GET of /; None lets a WebSocket upgrade through."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    if request.path not in ("/", "/index.html"):
        return connection.respond(HTTPStatus.NOT_FOUND, "not found: the demo page is at /\n")
    body = PAGE.read_bytes()
    headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)


def serve_web_demo(recognizer: Recognizer, port: int) -> Server:
    """A server on 127.0.0.1:`port` (0: a free port; `server.socket.getsockname()` says which),
    not yet serving: call `serve_forever()`, and `shutdown()` from another thread to stop it."""
    try:
        sock = socket.create_server((HOST, port))
    except OSError as e:
        raise FramegateError(f"cannot listen on {HOST}:{port} ({os.strerror(e.errno) if e.errno else e})") from None
    bound = sock.getsockname()[1]
    origins = [None, f"http://{HOST}:{bound}", f"http://localhost:{bound}"]
    return serve(functools.partial(_session, recognizer), sock=sock, origins=origins, process_request=_page,
                 compression=None, max_size=MAX_MESSAGE_BYTES)
