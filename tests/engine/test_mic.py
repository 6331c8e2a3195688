"""The live pipeline with sounddevice's InputStream replaced by a fake microphone.

No sound card exists on the test machines: `FakeMic` stands in for PortAudio, playing a
spoken utterance into the callback in 20 ms blocks at real-time pace (or in a burst),
and can fail the ways real devices fail (busy, bad rate, unplugged mid-stream, and
plugged back in). Keys come from `TimedKeys`, a stand-in for the terminal.
"""
from __future__ import annotations

import _thread
import io
import json
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sd = pytest.importorskip("sounddevice")

from framegate.engine import mic as mic_module  # noqa: E402
from framegate.engine.capture import CaptureBuffer  # noqa: E402
from framegate.engine.cli import main  # noqa: E402
from framegate.engine.compute_dial import GATED_ONLY, HINT  # noqa: E402
from framegate.engine.live import LiveSession  # noqa: E402
from framegate.engine.live_view import CpuLoadMeter, FinalLine, LiveView  # noqa: E402
from framegate.engine.mic import DeviceSource  # noqa: E402
from framegate.engine.recognizer import Recognizer  # noqa: E402
from framegate.engine.transcript_json import segment_record  # noqa: E402

FAKE_NAME = "fake mic"


class FakeInputStream:
    """What sounddevice.InputStream does with a callback, minus the hardware.

    Plays `mic.audio` from `mic.position` in `blocksize` blocks, paced like a device (or as
    fast as possible when `mic.realtime` is False). At the end it either stops delivering
    and presses Ctrl-C (a user ending the session) or, with `mic.unplug_after_s`, calls the
    finished callback unasked, as PortAudio does when a device disappears; the device is
    then gone for `mic.gone_for_opens` attempts to open it (None: for good).
    """

    def __init__(self, mic: FakeMic, *, device, samplerate, channels, dtype, blocksize, callback,
                 finished_callback) -> None:
        assert (device, samplerate, channels, dtype) == (0, mic.rate, 1, "float32")
        self._mic, self._blocksize = mic, blocksize
        self._callback, self._finished_callback = callback, finished_callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True)
        mic.streams.append(self)

    def start(self) -> None:
        if self._mic.start_error is not None:
            raise self._mic.start_error
        self._thread.start()

    def _play(self) -> None:
        mic, audio = self._mic, self._mic.audio
        first = mic.position
        end = len(audio) if mic.unplug_after_s is None else round(mic.unplug_after_s * mic.rate)
        started = time.perf_counter()
        for start in range(first, end, self._blocksize):
            block = audio[start:min(start + self._blocksize, end)]
            if mic.realtime and self._stop.wait(max(0.0, started + (start - first + len(block)) / mic.rate
                                                    - time.perf_counter())):
                return
            before = time.perf_counter()
            self._callback(block[:, np.newaxis].copy(), len(block), None, sd.CallbackFlags())
            mic.callback_s.append(time.perf_counter() - before)
            mic.position = start + len(block)
        mic.last_block_at = time.perf_counter()
        if mic.unplug_after_s is not None:
            mic.unplug_after_s, mic.failing_opens = None, mic.gone_for_opens
            self._finished_callback()
        else:
            _thread.interrupt_main()  # the user presses Ctrl-C once the utterance is over

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._finished_callback()


class FakeMic:
    """One input device whose 'microphone' hears `audio` (mono float32 at `rate`)."""

    def __init__(self, audio: np.ndarray, rate: int, realtime: bool = True) -> None:
        self.audio, self.rate, self.realtime = audio, rate, realtime
        self.position = 0  # next sample the microphone hears
        self.unplug_after_s: float | None = None
        self.gone_for_opens: int | None = None  # after the unplug; None: it never comes back
        self.failing_opens: int | None = 0
        self.refreshes = 0  # PortAudio re-initializations (device list refreshes)
        self.open_error: Exception | None = None
        self.start_error: Exception | None = None
        self.streams: list[FakeInputStream] = []
        self.callback_s: list[float] = []
        self.last_block_at: float | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeMic:
        monkeypatch.setattr(sd, "query_devices", self.query_devices)
        monkeypatch.setattr(sd, "InputStream", self.input_stream)
        monkeypatch.setattr(sd, "_terminate", lambda: None)
        monkeypatch.setattr(sd, "_initialize", self.refresh)
        return self

    def query_devices(self, device=None, kind=None):
        info = {"name": FAKE_NAME, "index": 0, "max_input_channels": 1, "default_samplerate": float(self.rate)}
        if kind is None:
            return [info]
        if device not in (None, 0, FAKE_NAME):
            raise ValueError(f"No input/output device matching {device!r}")
        return info

    def refresh(self) -> None:
        self.refreshes += 1

    def input_stream(self, **kwargs) -> FakeInputStream:
        if self.open_error is not None:
            raise self.open_error
        if self.failing_opens is None or self.failing_opens > 0:
            if self.failing_opens is not None:
                self.failing_opens -= 1
            raise sd.PortAudioError("Error opening InputStream: Invalid device", -9996)
        return FakeInputStream(self, **kwargs)


class TimedKeys:
    """The terminal as `LiveSession` reads it: each (after_s, keys) is typed once `after_s`
    seconds have passed since the first read."""

    def __init__(self, presses: list[tuple[float, str]]) -> None:
        self._presses = sorted(presses)
        self._started: float | None = None

    def read(self, timeout_s: float) -> str:
        now = time.perf_counter()
        self._started = now if self._started is None else self._started
        if self._presses and now - self._started >= self._presses[0][0]:
            return self._presses.pop(0)[1]
        time.sleep(min(timeout_s, 0.02))
        return ""


class RecordingView(LiveView):
    """A LiveView that also remembers when each partial was drawn."""

    def __init__(self) -> None:
        self.text = io.StringIO()
        super().__init__(self.text, interactive=True)
        self.partials: list[tuple[float, str]] = []

    def show_status(self, status: str, partial: str) -> None:
        self.partials.append((time.perf_counter(), partial))
        super().show_status(status, partial)


@pytest.fixture(autouse=True)
def ctrl_c_raises_keyboard_interrupt():
    """The fake user's Ctrl-C (`_thread.interrupt_main`) does nothing when SIGINT is ignored, as
    it is for a test run started in the background by a non-interactive shell: handle it here."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def quick_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnection attempts 0.05, 0.1 and 0.2 s after a loss, not seconds."""
    monkeypatch.setattr(mic_module, "RECONNECT_DELAYS_S", (0.05, 0.1, 0.2))


@pytest.fixture(scope="module")
def spoken(spoken_wav: Path) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(spoken_wav, dtype="float32")
    return samples, rate


@pytest.fixture(scope="module")
def recognizer(live_bundle: Path) -> Recognizer:
    return Recognizer(live_bundle)


@pytest.fixture(scope="module")
def transcribed(live_bundle: Path, spoken_wav: Path) -> str:
    """`framegate transcribe` of the utterance: what the live session must end with."""
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["transcribe", str(spoken_wav), "--model", str(live_bundle)]) == 0
    return out.getvalue().strip()


def test_partial_appears_before_the_utterance_ends_and_final_equals_transcribe(
        monkeypatch, recognizer, spoken, transcribed):
    mic = FakeMic(*spoken).install(monkeypatch)
    view = RecordingView()
    transcript = LiveSession(recognizer, DeviceSource(None), view, CpuLoadMeter()).run()

    assert transcript.interrupted and mic.last_block_at is not None
    assert any(partial and at < mic.last_block_at for at, partial in view.partials)
    assert transcript.text == transcribed
    assert transcript.stats.captured_samples == len(spoken[0]) and transcript.stats.dropped_samples == 0
    assert transcript.lines[-1].end_s == pytest.approx(len(spoken[0]) / spoken[1], abs=0.02)
    assert view.text.getvalue().splitlines()[-2].endswith("] " + transcript.lines[-1].text)


def test_callback_never_blocks_and_dropped_audio_is_shown(monkeypatch, recognizer, spoken):
    mic = FakeMic(*spoken, realtime=False).install(monkeypatch)
    slow_decode = recognizer.decode

    def decode_slowly(stream) -> None:  # a decoder far slower than a burst of audio
        time.sleep(0.05)
        slow_decode(stream)

    monkeypatch.setattr(recognizer, "decode", decode_slowly)
    view = RecordingView()
    transcript = LiveSession(recognizer, DeviceSource(None, capacity_s=0.2), view, CpuLoadMeter()).run()

    stats = transcript.stats
    assert stats.captured_samples == len(spoken[0]) and stats.dropped_blocks > 0
    assert stats.dropped_s >= 1.0  # 3.4 s arrived at once into a 0.2 s buffer
    assert max(mic.callback_s) < 0.005  # never waited for the 50 ms decoder
    screen = view.text.getvalue()
    assert re.search(r"dropped (\d+\.\d+) s", screen) and f"dropped {stats.dropped_s:.2f} s" in screen
    assert f"({stats.dropped_blocks} blocks)" in screen.splitlines()[-1]


def test_capture_buffer_counts_what_it_refuses():
    buffer = CaptureBuffer(sample_rate=1000, capacity_s=0.05)
    assert buffer.push(np.zeros(30, np.float32)) and not buffer.push(np.zeros(30, np.float32))
    assert buffer.push(np.zeros(20, np.float32), overflowed=True)
    stats = buffer.stats()
    assert (stats.captured_samples, stats.dropped_samples, stats.dropped_blocks, stats.overflows,
            stats.backlog_samples) == (80, 30, 1, 1, 50)
    assert [len(b) for b in buffer.take(timeout_s=0)] == [30, 20] and buffer.stats().lag_s == 0
    assert not buffer.drained
    buffer.finish()
    assert buffer.drained


def run_mic(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["mic", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("framegate: error: ") and needle in lines[0], err


def test_save_writes_the_audio_and_a_transcript_that_transcribe_reproduces(
        monkeypatch, capsys, live_bundle, spoken, transcribed, tmp_path):
    FakeMic(*spoken).install(monkeypatch)
    code, out, err = run_mic(capsys, "--model", str(live_bundle), "--save", str(tmp_path / "take.wav"))
    assert code == 0, err
    record = json.loads((tmp_path / "take.json").read_text())
    saved, rate = sf.read(tmp_path / "take.wav", dtype="float32")
    assert rate == spoken[1] and np.array_equal(saved, spoken[0])
    assert record["text"] == transcribed and record["dropped_s"] == 0 and record["sample_rate"] == spoken[1]
    assert record["segments"][-1]["end"] == pytest.approx(len(saved) / rate, abs=0.02)
    assert transcribed in out  # the last partial was finalized on screen
    # the segments have the shape `transcribe --json` gives them: one serializer for both
    offline = [segment_record(s) for s in Recognizer(live_bundle).transcribe(saved, rate).segments]
    assert [list(s) for s in record["segments"]] == [list(s) for s in offline] == [["channel", "start", "end",
                                                                                   "text"]] * len(offline)
    assert [(s["channel"], s["text"]) for s in record["segments"]] == [(s["channel"], s["text"]) for s in offline]


def test_no_input_device_exits_2_with_one_line(monkeypatch, capsys, live_bundle):
    def no_devices(device=None, kind=None):
        raise sd.PortAudioError("Error querying device -1")  # what PortAudio says without a sound card

    monkeypatch.setattr(sd, "query_devices", no_devices)
    code, _, err = run_mic(capsys, "--model", str(live_bundle))
    assert_one_line_error(code, err, "no audio input device found")


def test_unknown_device_exits_2_and_points_to_list_devices(monkeypatch, capsys, live_bundle, spoken):
    FakeMic(*spoken).install(monkeypatch)
    code, _, err = run_mic(capsys, "--model", str(live_bundle), "--device", "usb headset")
    assert_one_line_error(code, err, "--list-devices")


@pytest.mark.parametrize("error, needle", [
    (sd.PortAudioError("Error opening InputStream: Device unavailable", -9985), "is busy or unavailable"),
    (sd.PortAudioError("Error opening InputStream: Unanticipated host error", -9999,
                       (0, -16, "Device or resource busy")), "is busy or unavailable"),
    (sd.PortAudioError("Error opening InputStream: Invalid sample rate", -9997), "cannot record at 22050 Hz"),
])
def test_device_that_cannot_open_exits_2_with_one_line(monkeypatch, capsys, live_bundle, spoken, error, needle):
    FakeMic(*spoken).install(monkeypatch).open_error = error
    code, _, err = run_mic(capsys, "--model", str(live_bundle))
    assert_one_line_error(code, err, f"audio input device '{FAKE_NAME}' {needle}")


def test_device_unplugged_for_good_finalizes_then_exits_2(monkeypatch, capsys, live_bundle, spoken):
    mic = FakeMic(*spoken).install(monkeypatch)
    mic.unplug_after_s = 1.5
    code, out, err = run_mic(capsys, "--model", str(live_bundle))
    assert_one_line_error(code, err, f"'{FAKE_NAME}' stopped delivering audio after 1.5 s (unplugged?) "
                                     "and was not back within 0 s")
    assert "Traceback" not in err
    assert mic.refreshes == 3 and len(mic.streams) == 1  # every attempt re-listed the devices, none opened
    assert re.search(r"^\[ +0\.00 - +1\.50\] \S", out, re.MULTILINE)  # what was heard is kept
    assert "captured 1.5 s" in out.splitlines()[-1]


def test_list_devices_shows_input_devices(monkeypatch, capsys, spoken):
    FakeMic(*spoken).install(monkeypatch)
    monkeypatch.setattr(sd.default, "device", [0, -1])
    code, out, _ = run_mic(capsys, "--list-devices")
    assert code == 0 and out.strip() == f"*   0  {FAKE_NAME}  (1 ch, {spoken[1]} Hz)"


def test_compute_threshold_is_refused_for_a_dense_bundle(capsys, live_bundle, spoken_wav):
    code, _, err = run_mic(capsys, "--model", str(live_bundle), "--from-file", str(spoken_wav),
                           "--compute-threshold", "0.5")
    assert_one_line_error(code, err, "has no compute dial")


def test_from_file_runs_at_real_time_pace_and_ends_with_the_transcript(capsys, live_bundle, spoken_wav,
                                                                      transcribed):
    started = time.perf_counter()
    code, out, err = run_mic(capsys, "--model", str(live_bundle), "--from-file", str(spoken_wav))
    elapsed = time.perf_counter() - started
    assert code == 0, err
    duration_s = sf.info(str(spoken_wav)).duration
    assert duration_s <= elapsed < duration_s + 3.0
    finals = [m.group(1) for m in re.finditer(r"^\[ *[\d.]+ - *[\d.]+\] (.*)$", out, re.MULTILINE)]
    assert " ".join(finals) == transcribed  # not a terminal: only final lines, no partial redraws
    assert "\x1b" not in out


def test_status_line_keeps_the_newest_words_within_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    out = io.StringIO()
    view = LiveView(out, interactive=True)
    partial = " ".join(f"word{i}" for i in range(40))
    view.show_status("cpu  12%", partial)
    line = out.getvalue().split("\x1b[2K")[-1]
    assert line.startswith("[cpu  12%] > ...") and line.endswith("word39") and len(line) <= 60 - 3
    view.show_final(FinalLine("hello there", 1.0, 2.5))
    assert out.getvalue().endswith("\r\x1b[2K[   1.00 -    2.50] hello there\n")


def test_device_lost_mid_stream_is_reopened_and_the_gap_counted_as_dropped(monkeypatch, recognizer, spoken):
    mic = FakeMic(*spoken).install(monkeypatch)
    mic.unplug_after_s, mic.gone_for_opens = 1.0, 2  # unplugged at 1 s, back at the third attempt
    view = RecordingView()
    transcript = LiveSession(recognizer, DeviceSource(None), view, CpuLoadMeter()).run()

    stats = transcript.stats
    assert transcript.interrupted and len(mic.streams) == 2 and mic.refreshes == 3
    assert stats.reconnects == 1 and not stats.reconnecting
    assert stats.captured_samples == len(spoken[0]) and stats.dropped_samples == 0  # all heard, around the gap
    assert 0.05 + 0.1 + 0.2 <= stats.gap_s < 1.5 and stats.lost_s == stats.gap_s
    assert transcript.lines and transcript.lines[-1].end_s == pytest.approx(len(spoken[0]) / spoken[1], abs=0.02)
    screen = view.text.getvalue()
    assert "| device lost, reconnecting..." in screen
    assert f"dropped {stats.gap_s:.2f} s" in screen.split("device lost, reconnecting...")[-1]
    assert f"device reconnected 1x, {stats.gap_s:.2f} s missed while away" in screen.splitlines()[-1]


def test_dial_keys_change_the_live_streams_threshold_from_its_next_chunk(monkeypatch, tiny_gated, spoken):
    FakeMic(*spoken).install(monkeypatch)
    recognizer = Recognizer(tiny_gated["feature"][1])
    assert recognizer.create_stream().compute_threshold == 0.5
    view = RecordingView()
    keys = TimedKeys([(1.0, "]"), (1.2, "x+")])  # other keys do nothing
    transcript = LiveSession(recognizer, DeviceSource(None), view, None, keys=keys).run()

    thresholds = [chunk.threshold for chunk in transcript.compute.history]
    changed_at = thresholds.index(0.55)
    assert thresholds[:changed_at] == [0.5] * changed_at and thresholds[-1] == 0.6
    assert thresholds == sorted(thresholds) and set(thresholds) == {0.5, 0.55, 0.6}
    # Pressed 1 s (wall time) into 3.4 s of audio: mid-stream, at a chunk that depends on how far the
    # engine lags real time on a loaded machine (CI beside a training run applied it at chunk 10).
    assert 0 < changed_at < len(thresholds) - 1
    screen = view.text.getvalue()
    assert screen.startswith(HINT + "\n")
    shown = re.findall(r"\[enc +\d+% parts +(\d+)% thr (\d\.\d\d) \| lag", screen)
    assert [t for i, (_, t) in enumerate(shown) if i == 0 or t != shown[i - 1][1]] == ["0.50", "0.55", "0.60"]
    assert all(0 <= int(p) <= 100 for p, _ in shown)


def test_dial_keys_on_a_bundle_without_gates_say_so_once(monkeypatch, recognizer, spoken):
    samples, rate = spoken
    FakeMic(samples[:rate], rate).install(monkeypatch)  # one second is enough
    view = RecordingView()
    transcript = LiveSession(recognizer, DeviceSource(None), view, CpuLoadMeter(),
                             keys=TimedKeys([(0.0, "+"), (0.3, "]-")])).run()
    assert transcript.compute is None and transcript.interrupted
    screen = view.text.getvalue()
    assert screen.count(GATED_ONLY) == 1 and HINT not in screen and " thr " not in screen



def test_the_search_flags_reach_the_live_session(capsys, live_bundle, spoken_wav):
    """--beam 1 --lm-weight 0 is greedy search, live as in `framegate transcribe`."""
    import contextlib

    transcript = io.StringIO()
    with contextlib.redirect_stdout(transcript):
        assert main(["transcribe", str(spoken_wav), "--model", str(live_bundle), "--beam", "1",
                     "--lm-weight", "0"]) == 0
    code, out, err = run_mic(capsys, "--model", str(live_bundle), "--from-file", str(spoken_wav), "--beam", "1",
                             "--lm-weight", "0")
    assert code == 0, err
    finals = [m.group(1) for m in re.finditer(r"^\[ *[\d.]+ - *[\d.]+\] (.*)$", out, re.MULTILINE)]
    assert " ".join(finals) == transcript.getvalue().strip() != ""
