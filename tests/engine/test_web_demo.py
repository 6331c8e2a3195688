"""`framegate web` headless: a Python WebSocket client plays the page's part.

The server runs on a free port in a thread; the client sends the hello message, then a
spoken utterance as float32 blocks of 20 ms at twice real-time pace, reading what comes
back as it goes, then the end message.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("websockets")
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from framegate.engine.compute_dial import HINT  # noqa: E402
from framegate.engine.recognizer import Recognizer  # noqa: E402
from framegate.engine.web_demo import serve_web_demo  # noqa: E402

BLOCK_S = 0.02


def serve(bundle: Path):
    """A running demo server for `bundle` and its port; shut down by the caller."""
    server = serve_web_demo(Recognizer(bundle), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.socket.getsockname()[1]


@pytest.fixture
def demo(live_bundle: Path):
    server, port = serve(live_bundle)
    yield port
    server.shutdown()


def received(ws: ClientConnection) -> list[dict]:
    """Every message already here, without waiting."""
    messages = []
    while True:
        try:
            messages.append(json.loads(ws.recv(timeout=0)))
        except TimeoutError:
            return messages


def stream_file(ws: ClientConnection, samples: np.ndarray, rate: int,
                keys_at_s: dict[float, str] | None = None) -> tuple[list[dict], list[dict]]:
    """Hello, blocks at twice real time (sending `keys_at_s` keys on the way), end; the messages
    received while sending and after the end message, up to "done"."""
    ws.send(json.dumps({"sample_rate": rate}))
    block = round(BLOCK_S * rate)
    during = []
    for start in range(0, len(samples), block):
        for key in [k for at_s, k in (keys_at_s or {}).items() if start <= at_s * rate < start + block]:
            ws.send(json.dumps({"keys": key}))
        ws.send(samples[start:start + block].astype("<f4").tobytes())
        during += received(ws)
        time.sleep(BLOCK_S / 2)
    ws.send(json.dumps({"end": True}))
    after = []
    while not after or after[-1]["type"] != "done":
        after.append(json.loads(ws.recv(timeout=30)))
    return during, after


def test_client_gets_partials_while_streaming_then_finals_equal_to_transcription(demo, live_bundle, spoken_wav):
    samples, rate = sf.read(spoken_wav, dtype="float32")
    with connect(f"ws://127.0.0.1:{demo}/") as ws:
        during, after = stream_file(ws, samples, rate)

    partials = [m for m in during if m["type"] == "partial"]
    assert any(m["text"] for m in partials)  # words before the utterance was over
    assert all(re.fullmatch(r"cpu +\d+% \| lag +\d+\.\d s \| dropped 0\.00 s", m["status"]) for m in partials)
    finals = [m for m in during + after if m["type"] == "final"]
    assert finals and all(list(m) == ["type", "channel", "start", "end", "text"] for m in finals)
    assert " ".join(m["text"] for m in finals) == Recognizer(live_bundle).transcribe(samples, rate).text
    assert finals[-1]["end"] == pytest.approx(len(samples) / rate, abs=0.02)
    assert re.match(rf"captured {len(samples) / rate:.1f} s from the browser \(127\.0\.0\.1\) at {rate} Hz; "
                    r"dropped 0\.00 s", after[-1]["summary"])


def test_dial_keys_from_the_page_turn_a_gated_streams_threshold(tiny_gated, spoken_wav):
    samples, rate = sf.read(spoken_wav, dtype="float32")
    server, port = serve(tiny_gated["feature"][1])
    try:
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            during, after = stream_file(ws, samples[:rate], rate, keys_at_s={0.3: "]"})
    finally:
        server.shutdown()
    messages = during + after
    assert messages[0] == {"type": "notice", "text": HINT}
    shown = [re.search(r"thr (\d\.\d\d)", m["status"]).group(1) for m in messages if m["type"] == "partial"]
    assert shown[0] == "0.50" and shown[-1] == "0.55" and shown == sorted(shown)


def test_page_is_served_and_foreign_origins_and_bad_hellos_are_refused(demo):
    with urllib.request.urlopen(f"http://127.0.0.1:{demo}/") as response:
        page = response.read().decode()
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "new WebSocket(" in page and "audioWorklet" in page
    with pytest.raises(InvalidStatus, match="403"):
        connect(f"ws://127.0.0.1:{demo}/", origin="http://example.com")
    with connect(f"ws://127.0.0.1:{demo}/", origin=f"http://localhost:{demo}") as ws:
        ws.send(json.dumps({"sample_rate": 5}))
        assert json.loads(ws.recv(timeout=10)) == {
            "type": "error", "message": "sample_rate must be an integer in [8000, 384000] Hz, got 5"}


def test_a_port_in_use_is_a_clear_error(live_bundle):
    import socket

    from framegate.engine.errors import FramegateError

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(FramegateError, match=f"cannot listen on 127.0.0.1:{port} \\(Address already in use\\)"):
            serve_web_demo(Recognizer(live_bundle), port)
