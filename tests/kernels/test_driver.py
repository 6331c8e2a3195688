"""The Python-free C++ driver (cpp/tools/framegate_driver.cc) replays recorded frames exactly as the engine runs them.

Its inputs are written from tiny random bundles by benchmarks/arm/record.py; the Release driver
is the one the ARM benchmark builds (build/arm/native, incremental); malformed files go to the
AddressSanitizer + UBSan build (cpp/build_checks.sh asan, built by setup.sh), so "a clear error,
not a crash" is checked by the sanitizers too.
"""
from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from framegate.benchmarks.arm.agreement import agreement
from framegate.benchmarks.arm.record import record
from framegate.benchmarks.arm.toolchain import REPO, build_driver
from framegate.kernels.raw_tensors import RawTensorError, read_raw_tensors, write_raw_tensors

from test_native_build import checks_build  # tests/kernels is on sys.path (rootdir-less tests)


@pytest.fixture(scope="module")
def release_driver() -> Path:
    return build_driver(REPO / "build" / "arm", cross=False)


@pytest.fixture(scope="module")
def asan_driver() -> Path:
    return checks_build("asan") / "framegate_driver"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, tiny_gated, convrnnt_model_and_bundle, speechlike_16k):
    """Per arbitrator kind, the tiny gated bundle (plus the tiny ConvRNN-T's global CNN) recorded
    on two utterances cut from the speech-like signal, threshold calibrated to about half on."""
    utterances = [speechlike_16k[:40000], speechlike_16k[40000:70000]]
    return {kind: record(tmp_path_factory.mktemp(f"rec_{kind}"), utterances, tiny_gated[kind][1],
                         convrnnt_model_and_bundle[1]) for kind in ("feature", "block")}


def run_driver(driver: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(driver), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["feature", "block"])
def test_driver_agrees_with_the_engine_on_gates_values_and_the_global_cnn(recordings, release_driver, tmp_path,
                                                                            kind):
    rec = recordings[kind]
    out = tmp_path / "out.fgt"
    proc = run_driver(release_driver, "--weights", str(rec.model), "--inputs", str(rec.inputs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    inputs, outputs = read_raw_tensors(rec.inputs), read_raw_tensors(out)
    report = agreement(inputs, outputs)
    assert report["passed"], report
    assert report["gate_decisions"]["disagree"] == 0
    assert 0.3 < report["gate_decisions"]["fraction_on"] < 0.7  # both on and off parts were exercised
    for key in ("forced_values", "dense_values", "global_cnn_values"):
        assert report[key]["max_abs_diff"] <= 1e-4 * max(1.0, report[key]["reference_max_abs"]), key
    assert outputs["gated.macs"] < outputs["dense.macs"]
    assert int(outputs["gated.attention_rows"].sum() + outputs["gated.ff_rows"].sum()) == int(outputs["gated.gates"].sum())


def test_driver_runs_clean_under_sanitizers_and_every_pass_reproduces_the_first(recordings, asan_driver, tmp_path):
    rec = recordings["block"]
    out = tmp_path / "out.fgt"
    proc = run_driver(asan_driver, "--weights", str(rec.model), "--inputs", str(rec.inputs), "--out", str(out),
                      "--runs", "gated,dense,global_cnn", "--repeat", "3")
    assert proc.returncode == 0, proc.stderr
    assert "runtime error" not in proc.stderr and "Sanitizer" not in proc.stderr
    outputs = read_raw_tensors(out)
    per_run = {"out", "probs", "gates", "macs", "attention_rows", "ff_rows", "seconds"}
    assert set(outputs) == {f"{run}.{key}" for run in ("gated", "dense") for key in per_run} | {
        "global_cnn.out", "global_cnn.seconds"}
    assert outputs["dense.seconds"].shape == (3,) and (outputs["dense.seconds"] > 0).all()
    assert [json.loads(line)["run"] for line in proc.stdout.splitlines()] == ["gated", "dense", "global_cnn"]


def _damaged(tmp_path: Path, name: str, tensors: dict, change) -> Path:
    tensors = dict(tensors)
    change(tensors)
    return write_raw_tensors(tmp_path / name, tensors)


@pytest.mark.parametrize("damage, message", [
    ("truncated_model", "truncated"),
    ("bad_magic", "not a framegate raw tensor file"),
    ("transposed_weight", "'gated.block0.qkv_weight' has shape (16, 48), expected (48, 16)"),
    ("unexpected_weight", "unexpected tensor 'gated.block9.qkv_bias'"),
    ("nan_frame", "non-finite"),
    ("missing_chunk_frames", "no tensor 'gated.chunk_frames'"),
    ("lengths_disagree", "'gated.utterance_frames' sums to"),
])
def test_malformed_files_exit_2_with_one_clear_line_not_a_crash(recordings, asan_driver, tmp_path, damage, message):
    rec = recordings["feature"]
    model, inputs = read_raw_tensors(rec.model), read_raw_tensors(rec.inputs)
    model_path, inputs_path = rec.model, rec.inputs
    if damage == "truncated_model":
        model_path = tmp_path / "cut.fgt"
        model_path.write_bytes(rec.model.read_bytes()[:-7])
    elif damage == "bad_magic":
        model_path = tmp_path / "magic.fgt"
        model_path.write_bytes(b"XG" + rec.model.read_bytes()[2:])
    elif damage == "transposed_weight":
        model_path = _damaged(tmp_path, "t.fgt", model, lambda t: t.update(
            {"gated.block0.qkv_weight": np.ascontiguousarray(t["gated.block0.qkv_weight"].T)}))
    elif damage == "unexpected_weight":
        model_path = _damaged(tmp_path, "u.fgt", model, lambda t: t.update(
            {"gated.block9.qkv_bias": np.zeros(48, np.float32)}))
    elif damage == "nan_frame":
        frames = inputs["gated.frames"].copy()
        frames[3, 1] = np.nan
        inputs_path = _damaged(tmp_path, "n.fgt", inputs, lambda t: t.update({"gated.frames": frames}))
    elif damage == "missing_chunk_frames":
        inputs_path = _damaged(tmp_path, "m.fgt", inputs, lambda t: t.pop("gated.chunk_frames"))
    elif damage == "lengths_disagree":
        inputs_path = _damaged(tmp_path, "l.fgt", inputs, lambda t: t.update(
            {"gated.utterance_frames": t["gated.utterance_frames"] + 1}))
    proc = run_driver(asan_driver, "--weights", str(model_path), "--inputs", str(inputs_path), "--runs", "gated")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framegate_driver: error: "), proc.stderr
    assert message in lines[0]


def test_bad_arguments_exit_2_and_help_exits_0(asan_driver):
    assert run_driver(asan_driver, "--weights", "x").returncode == 2
    assert "unknown run 'sparse'" in run_driver(asan_driver, "--weights", "a", "--inputs", "b",
                                                "--runs", "sparse").stderr
    helped = run_driver(asan_driver, "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: framegate_driver")


def test_python_reader_refuses_what_the_cpp_reader_refuses(tmp_path):
    path = write_raw_tensors(tmp_path / "t.fgt", {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                                                   "n": np.int64(7), "g": np.array([1, 0], np.uint8)})
    back = read_raw_tensors(path)
    assert back["a"].tolist() == [[0, 1, 2], [3, 4, 5]] and back["n"].shape == () and back["g"].dtype == np.uint8
    data = path.read_bytes()
    for cut in (3, 20, len(data) - 1):
        (tmp_path / "cut.fgt").write_bytes(data[:cut])
        with pytest.raises(RawTensorError, match="truncated"):
            read_raw_tensors(tmp_path / "cut.fgt")
    (tmp_path / "extra.fgt").write_bytes(data + b"\0")
    with pytest.raises(RawTensorError, match="1 trailing bytes"):
        read_raw_tensors(tmp_path / "extra.fgt")
    with pytest.raises(RawTensorError, match="dtype int32"):
        write_raw_tensors(tmp_path / "x.fgt", {"i": np.zeros(2, np.int32)})
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=((1 << 40) + 1, 0), strides=(0, 0))
    with pytest.raises(RawTensorError, match="2\\*\\*40"):
        write_raw_tensors(tmp_path / "h.fgt", {"h": huge})
    empty = write_raw_tensors(tmp_path / "e.fgt", {"e": np.zeros((3, 0), np.float32)}).read_bytes()
    dims_at = len(empty) - 16  # the last record's two u64 dims (no data: the tensor is empty)
    (tmp_path / "big.fgt").write_bytes(empty[:dims_at] + struct.pack("<QQ", (1 << 40) + 1, 0))
    with pytest.raises(RawTensorError, match="above 2\\*\\*40"):
        read_raw_tensors(tmp_path / "big.fgt")
