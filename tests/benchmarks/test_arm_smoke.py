"""Smoke test of the ARM benchmark (`python -m framegate.benchmarks.arm`) on one tiny input.

The x86 path always runs (record, native driver build, agreement, gated/dense timing, report).
The cross-compile + qemu path runs only where its tools are already installed and qemu's insn
plugin already built (the benchmark installs and builds them on its first full run); it never
installs anything from a test.
"""
from __future__ import annotations

import json

import pytest
import soundfile as sf

from framegate.benchmarks.arm.__main__ import SCHEMA, run
from framegate.benchmarks.arm.toolchain import REPO, missing_tools

BUILD_DIR = REPO / "build" / "arm"


@pytest.fixture(scope="module")
def one_utterance(tmp_path_factory, speechlike_16k):
    work = tmp_path_factory.mktemp("arm_audio")
    sf.write(work / "utt.wav", speechlike_16k[:32000], 16000)
    manifest = work / "test.jsonl"
    manifest.write_text(json.dumps({"audio": "utt.wav", "text": ""}) + "\n", encoding="utf-8")
    return manifest


def _run(tmp_path, manifest, tiny_gated, convrnnt_model_and_bundle, x86_only: bool) -> dict:
    out = tmp_path / "arm.json"
    report = run(out, manifest, seconds=1.0, gated=tiny_gated["feature"][1], convrnnt=convrnnt_model_and_bundle[1],
                 threshold=None, build_dir=BUILD_DIR, x86_only=x86_only, install=False, repeat=2, rounds=1,
                 work_dir=tmp_path / "files")
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(json.dumps(report))
    assert out.with_suffix(".png").stat().st_size > 0
    return report


def test_arm_benchmark_x86_path_records_agrees_and_times(tmp_path, one_utterance, tiny_gated,
                                                         convrnnt_model_and_bundle):
    report = _run(tmp_path, one_utterance, tiny_gated, convrnnt_model_and_bundle, x86_only=True)
    assert report["schema"] == SCHEMA and report["passed"]
    assert report["x86"]["agreement"]["compared"] == 6
    gating = json.loads((tiny_gated["feature"][1] / "bundle.json").read_text())["gating"]
    assert report["threshold"] == gating["default_threshold"]  # a given bundle runs at its own operating point
    assert report["threshold_rule"] == "the gated bundle's default_threshold"
    assert 0.0 < report["fraction_on"] < 1.0
    assert 0.0 < report["kernel_mac_ratio"] < 1.0
    assert len(report["x86"]["time_s"]["gated"]) == 2 and report["x86_time_ratio"] > 0
    assert report["arm"] == {"skipped": "--x86-only"}


def test_arm_benchmark_cross_path_agrees_under_qemu_and_counts_instructions(tmp_path, one_utterance, tiny_gated,
                                                                           convrnnt_model_and_bundle):
    missing = missing_tools(BUILD_DIR)
    if missing:
        pytest.skip(f"cross/qemu tools not installed here: {'; '.join(missing)} "
                    "(python -m framegate.benchmarks.arm installs them)")
    report = _run(tmp_path, one_utterance, tiny_gated, convrnnt_model_and_bundle, x86_only=False)
    arm = report["arm"]
    assert arm["agreement"]["passed"], arm["agreement"]
    counts = arm["instructions"]
    assert 0 < counts["gated_per_pass"] < counts["dense_per_pass"] < counts["dense_process_1_pass"]
    assert report["instruction_ratio"] == pytest.approx(counts["gated_per_pass"] / counts["dense_per_pass"])
