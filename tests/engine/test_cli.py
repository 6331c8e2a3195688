"""`framegate transcribe` and the dispatcher's error convention: one line, exit 2."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framegate.engine.cli import main

JSON_KEYS = {"file", "text", "tokens", "timestamps", "duration_s", "rtf"}


@pytest.fixture(scope="module")
def audio_files(speechlike_16k, tmp_path_factory) -> dict[str, Path]:
    """The test signal as wav (16 kHz), flac (44.1 kHz stereo) and ogg (8 kHz)."""
    import soxr

    out = tmp_path_factory.mktemp("audio")
    clip = speechlike_16k[:16000 * 3]
    sf.write(out / "a.wav", clip, 16000, subtype="PCM_16")
    stereo = np.stack([soxr.resample(clip, 16000, 44100)] * 2, axis=1)
    sf.write(out / "b.flac", stereo, 44100)
    sf.write(out / "c.ogg", soxr.resample(clip, 16000, 8000), 8000, format="OGG", subtype="VORBIS")
    return {p.suffix[1:]: p for p in sorted(out.iterdir())}


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framegate: error: ") and needle in lines[0]


def test_transcribe_json_lines_for_wav_flac_ogg(capsys, tiny_bundle, audio_files):
    files = [str(audio_files[k]) for k in ("wav", "flac", "ogg")]
    code, out, err = run_main(capsys, "transcribe", *files, "--model", str(tiny_bundle), "--json", "--threads", "1")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in records] == files
    for record in records:
        assert set(record) == JSON_KEYS  # endpoints never split 3 s of this signal with default rules
        assert record["duration_s"] == pytest.approx(3.0, abs=1e-3)
        assert record["rtf"] > 0 and len(record["tokens"]) == len(record["timestamps"])
        assert record["text"]


def test_transcribe_plain_text_for_one_file(capsys, tiny_bundle, audio_files):
    code, out, _ = run_main(capsys, "transcribe", str(audio_files["wav"]), "--model", str(tiny_bundle))
    assert code == 0 and len(out.splitlines()) == 1 and out.strip()


def test_transcribe_reads_files_in_blocks_whose_windows_share_encoder_calls_with_the_live_text(
        capsys, tiny_bundle, audio_files, monkeypatch):
    from framegate.engine.recognizer import Recognizer

    live = Recognizer(tiny_bundle, num_threads=1)
    stream = live.create_stream()
    clip, rate = sf.read(audio_files["wav"], dtype="float32")
    for i in range(0, len(clip), 1600):  # what a live source delivers: 100 ms blocks
        stream.accept_waveform(rate, clip[i:i + 1600])
        live.decode(stream)
    stream.input_finished()
    live.decode(stream)
    calls, windows = [], []
    encode_windows = Recognizer.encode_windows

    def counting(self, batch, state):
        calls.append(1)
        windows.append(len(batch))
        return encode_windows(self, batch, state)

    monkeypatch.setattr(Recognizer, "encode_windows", counting)
    code, out, err = run_main(capsys, "transcribe", str(audio_files["wav"]), "--model", str(tiny_bundle), "--json")
    assert code == 0, err
    assert json.loads(out)["tokens"] == stream.result.tokens
    assert len(calls) <= sum(windows) / 8  # 100 ms blocks would make about one call per window


def test_segments_appear_when_endpoints_split_the_file(capsys, tiny_bundle, speechlike_16k, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.tile(speechlike_16k, 4), 16000)  # 25 s: rule 3 (20 s) must cut it
    code, out, err = run_main(capsys, "transcribe", str(path), "--model", str(tiny_bundle), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert set(record) == JSON_KEYS | {"segments"} and len(record["segments"]) >= 2


@pytest.mark.parametrize("kind, needle", [
    ("empty", "is empty"), ("not_audio", "not a readable audio file"), ("missing", "no such file"),
])
def test_bad_audio_files_exit_2_with_one_line(capsys, tiny_bundle, tmp_path, kind, needle):
    path = tmp_path / f"{kind}.wav"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_audio":
        path.write_text("this is not audio\n" * 50)
    code, _, err = run_main(capsys, "transcribe", str(path), "--model", str(tiny_bundle))
    assert_user_error(code, err, needle)


def test_truncated_bundle_exits_2(capsys, tiny_bundle, audio_files, tmp_path):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    (bundle / "encoder.onnx").write_bytes((bundle / "encoder.onnx").read_bytes()[:500])
    code, _, err = run_main(capsys, "transcribe", str(audio_files["wav"]), "--model", str(bundle))
    assert_user_error(code, err, "encoder.onnx")


def test_wrong_format_version_exits_2_without_traceback_in_a_real_process(tiny_bundle, audio_files, tmp_path):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["format_version"] = 7
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    proc = subprocess.run([sys.executable, "-m", "framegate.engine.cli", "transcribe", str(audio_files["wav"]),
                           "--model", str(bundle)], capture_output=True, text=True, timeout=120)
    assert_user_error(proc.returncode, proc.stderr, "format_version 7; this engine supports version 1")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_ctrl_c_in_any_verb_exits_130_with_one_line(capsys, monkeypatch, audio_files):
    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr("framegate.engine.cli._transcribe", interrupted)
    code, out, err = run_main(capsys, "transcribe", str(audio_files["wav"]))
    assert (code, out, err) == (130, "", "framegate: interrupted\n")


def test_export_verb_writes_a_loadable_bundle(capsys, tiny_checkpoint, tmp_path):
    code, out, err = run_main(capsys, "export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b"))
    assert code == 0, err
    from framegate.engine.bundle import Bundle
    assert Bundle.load(out.strip()).model_card == {"checkpoint": str(tiny_checkpoint)}


def test_export_of_a_missing_checkpoint_exits_2(capsys, tmp_path):
    code, _, err = run_main(capsys, "export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b"))
    assert_user_error(code, err, "no such file")
