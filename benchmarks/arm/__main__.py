"""ARM benchmark: the C++ kernels cross-compiled for aarch64, run under qemu on x86-recorded inputs.

`python -m framegate.benchmarks.arm --json OUT.json [--gated BUNDLE] [--convrnnt BUNDLE]
 [--manifest data/corpus/test.jsonl] [--seconds 12] [--threshold X] [--x86-only] [--no-install]`

One command, every step (benchmarks/README.md, "ARM"):
 1. bundles: the given ones, or random-weight bundles at the size of export/recipes/gated_feature.toml
    and convrnnt.toml (benchmarks/arm/random_bundles.py; the report says which);
 2. record (record.py): weights from the bundles, front-end frames of the manifest's first
    `--seconds` of audio, the x86 engine's references; the gated threshold is `--threshold`, else a
    given bundle's own default, else (random weights) calibrated so about half the gates are on;
 3. x86: the driver (cpp/tools/framegate_driver.cc) built natively, its agreement with the engine,
    and its wall time gated vs dense (`--rounds` alternations of `--repeat` passes, best pass);
 4. ARM: Debian's aarch64 cross compiler, qemu-user, arm64 OpenBLAS and glib headers installed
    (unless `--no-install`), qemu's insn plugin built from qemu's source package, the driver
    cross-compiled; its outputs under qemu-aarch64 compared with the x86 references, and the
    guest instructions of one pass gated vs dense (a 2-pass run minus a 1-pass run, so loading
    is not counted).
Builds and the plugin live in `--build-dir` (build/arm, reused); the run's files (bundles, recorded
inputs, driver outputs, qemu logs) in `--work-dir` (build/arm/runs/<report name>). Writes OUT.json
and OUT.png beside it (schema framegate.bench.arm/1); exits 1 if an agreement check fails, 2 on errors.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from framegate.benchmarks.arm import toolchain
from framegate.benchmarks.arm.agreement import BAND, TOLERANCE, agreement
from framegate.benchmarks.arm.random_bundles import random_bundle
from framegate.benchmarks.arm.record import Recording, record
from framegate.benchmarks.report import machine_info, write_report
from framegate.engine.audio import canonical_16k, read_audio
from framegate.engine.errors import FramegateError
from framegate.kernels.raw_tensors import read_raw_tensors

SCHEMA = "framegate.bench.arm/1"
RECIPES = {"gated": toolchain.REPO / "export/recipes/gated_feature.toml",
           "convrnnt": toolchain.REPO / "export/recipes/convrnnt.toml"}


def log(message: str) -> None:
    print(f"[arm] {message}", file=sys.stderr, flush=True)


def load_audio(manifest: Path, seconds: float) -> tuple[list[np.ndarray], list[str]]:
    """The manifest's utterances in order until `seconds` of audio (at least one), as 16 kHz."""
    utterances, names, total = [], [], 0.0
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "audio" not in row:
            raise ValueError(f"{manifest}: a line without 'audio': {line[:80]}")
        path = manifest.parent / row["audio"]
        samples = canonical_16k(*read_audio(path))
        utterances.append(samples)
        names.append(str(path))
        total += len(samples) / 16000
        if total >= seconds:
            break
    if not utterances:
        raise ValueError(f"{manifest}: no utterances")
    return utterances, names


def driver_args(rec: Recording, out: Path | None = None, runs: str | None = None, repeat: int = 1) -> list[str]:
    args = ["--weights", str(rec.model), "--inputs", str(rec.inputs), "--repeat", str(repeat)]
    args += ["--out", str(out)] if out else []
    return args + (["--runs", runs] if runs else [])


def seconds_of(stdout: str) -> list[float]:
    """Every pass's seconds from the driver's JSON lines."""
    return [s for line in stdout.splitlines() if line.startswith("{") for s in json.loads(line)["seconds"]]


def x86_part(rec: Recording, inputs: dict, build_dir: Path, files: Path, repeat: int, rounds: int) -> dict:
    log("building the driver natively")
    driver = toolchain.build_driver(build_dir, cross=False)
    toolchain.run_driver(driver, driver_args(rec, files / "x86_out.fgt"))
    result = {"driver": str(driver), "agreement": agreement(inputs, read_raw_tensors(files / "x86_out.fgt"))}
    if "gated" in rec.frames:
        log(f"timing gated vs dense natively ({rounds} rounds x {repeat} passes)")
        times: dict[str, list[float]] = {"gated": [], "dense": []}
        for _ in range(rounds):
            for mode in times:
                times[mode] += seconds_of(toolchain.run_driver(driver, driver_args(rec, runs=mode, repeat=repeat)).stdout)
        result["time_s"] = times
        result["time_ratio"] = min(times["gated"]) / min(times["dense"])
        result["time_ratio_median"] = float(np.median(times["gated"]) / np.median(times["dense"]))
        result["best_ms_per_frame"] = {m: 1000 * min(t) / rec.frames["gated"] for m, t in times.items()}
    return result


def arm_part(rec: Recording, inputs: dict, build_dir: Path, files: Path, install: bool) -> dict:
    if install:
        toolchain.install_packages(log)
    elif missing := toolchain.missing_packages():
        raise toolchain.ToolchainError(f"missing Debian packages {missing} (run without --no-install)")
    plugin = toolchain.qemu_plugin(build_dir, log)
    log("cross-compiling the driver for aarch64")
    driver = toolchain.build_driver(build_dir, cross=True)
    log("running the driver under qemu-aarch64 (agreement)")
    toolchain.run_driver(driver, driver_args(rec, files / "arm_out.fgt"), arm=True)
    result = {"driver": str(driver), "qemu_cpu": toolchain.QEMU_CPU,
              "openblas_coretype": toolchain.OPENBLAS_CORETYPE, "flags": "-O3 -march=armv8-a (NEON)",
              **toolchain.versions(),
              "agreement": agreement(inputs, read_raw_tensors(files / "arm_out.fgt"))}
    if "gated" in rec.frames:
        counts: dict[str, dict[int, int]] = {"gated": {}, "dense": {}}
        for mode in counts:
            for passes in (1, 2):
                log(f"counting guest instructions: {mode}, {passes} pass(es)")
                run = toolchain.run_driver(driver, driver_args(rec, runs=mode, repeat=passes), arm=True,
                                           plugin=plugin, log_file=files / f"insn_{mode}_{passes}.log")
                counts[mode][passes] = run.instructions
        per_pass = {mode: c[2] - c[1] for mode, c in counts.items()}
        result["instructions"] = {"gated_per_pass": per_pass["gated"], "dense_per_pass": per_pass["dense"],
                                  "gated_process_1_pass": counts["gated"][1],
                                  "dense_process_1_pass": counts["dense"][1],
                                  "ratio": per_pass["gated"] / per_pass["dense"],
                                  "per_frame": {m: v / rec.frames["gated"] for m, v in per_pass.items()}}
    return result


def figure(report: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = {"kernel MACs\n(counted)": report.get("kernel_mac_ratio"),
            "ARM guest insns\n(qemu)": report.get("instruction_ratio"),
            "x86 wall time\n(same driver)": report.get("x86_time_ratio")}
    names = [k for k, v in bars.items() if v is not None]
    values = [bars[k] for k in names]
    left.bar(names, values, color=["#888", "#c55", "#57a"][:len(names)])
    for i, v in enumerate(values):
        left.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    left.axhline(1.0, color="k", lw=0.8, ls="--")
    left.set_ylabel("gated / dense")
    left.set_title(f"Gated vs dense, {report['fraction_on']:.0%} of parts on "
                   f"(threshold {report['threshold']:.4f})" if report.get("threshold") is not None else "Gated vs dense")
    labels, diffs = [], []
    for side, name in (("x86", "x86 driver"), ("arm", "ARM (qemu)")):
        agree = report.get(side, {}).get("agreement", {})
        for key in ("forced_values", "dense_values", "global_cnn_values", "forced_probs"):
            if key in agree and "scaled_diff" in agree[key]:
                labels.append(f"{name}\n{key.replace('_values', '').replace('_', ' ')}")
                diffs.append(agree[key]["scaled_diff"])
    floor = 1e-9  # where a bit-exact (zero) difference is drawn
    right.bar(labels, [max(d, floor) for d in diffs], color="#5a5")
    for i, d in enumerate(diffs):
        right.text(i, max(d, floor), f"{d:.1e}" if d else "exact", ha="center", va="bottom", fontsize=7)
    right.axhline(TOLERANCE, color="r", lw=1, ls="--", label=f"tolerance {TOLERANCE:g}")
    right.set_yscale("log")
    right.set_ylabel("max |diff| / max(1, max |ref|)")
    gates = report.get("arm", {}).get("agreement", {}).get("gate_decisions") or \
        report.get("x86", {}).get("agreement", {}).get("gate_decisions")
    right.set_title("Agreement with the x86 engine" + (
        f" (ARM gate decisions: {gates['disagree']} of {gates['gates']} differ)" if gates else ""), fontsize=9)
    right.tick_params(axis="x", labelsize=6)
    right.set_ylim(floor / 2, 1e-3)
    right.legend(fontsize=8)
    fig.suptitle(f"framegate ARM benchmark ({report['weights_note']})", fontsize=9)
    fig.tight_layout()
    return fig


def run(out: Path, manifest: Path, seconds: float, gated: Path | None, convrnnt: Path | None,
        threshold: float | None, build_dir: Path, x86_only: bool, install: bool, repeat: int, rounds: int,
        work_dir: Path | None = None, seed: int = 0) -> dict:
    files = work_dir or build_dir / "runs" / out.stem  # bundles, recorded inputs, driver outputs, qemu logs
    files.mkdir(parents=True, exist_ok=True)
    weights: dict[str, dict] = {}
    bundles = {"gated": gated, "convrnnt": convrnnt}
    for kind, bundle in bundles.items():
        if bundle is None:
            log(f"building a random-weight {kind} bundle at {RECIPES[kind].name}'s size")
            bundles[kind] = random_bundle(RECIPES[kind], files / f"{kind}_bundle", seed=seed)
            weights[kind] = {"bundle": str(bundles[kind]), "weights": f"random (seed {seed}), untrained",
                             "recipe": str(RECIPES[kind].relative_to(toolchain.REPO))}
        else:
            weights[kind] = {"bundle": str(bundle), "weights": "given bundle"}
        weights[kind]["encoder"] = json.loads((Path(bundles[kind]) / "bundle.json").read_text())["encoder"]
    rule = None
    if threshold is None and gated is not None:  # a trained model: its own operating point, not a calibrated one
        threshold = float(json.loads((Path(gated) / "bundle.json").read_text())["gating"]["default_threshold"])
        rule = "the gated bundle's default_threshold"
    utterances, names = load_audio(manifest, seconds)
    log(f"recording {len(utterances)} utterances ({sum(map(len, utterances)) / 16000:.1f} s)")
    rec = record(files, utterances, bundles["gated"], bundles["convrnnt"], threshold)
    inputs = read_raw_tensors(rec.inputs)
    random_note = any(w["weights"] != "given bundle" for w in weights.values())
    report = {
        "schema": SCHEMA,
        "work_dir": str(files),
        "machine": machine_info(),
        "weights": weights,
        "weights_note": "random-weight bundles at the recipes' sizes" if random_note else "given bundles",
        "inputs": {"manifest": str(manifest), "utterances": names, "audio_s": sum(map(len, utterances)) / 16000,
                   "frames": rec.frames, "chunk_frames": rec.chunk_frames},
        "threshold": rec.threshold, "threshold_rule": rule or rec.threshold_rule, "fraction_on": rec.fraction_on,
        "agreement_rules": {"band": BAND, "tolerance": TOLERANCE,
                            "scaled_diff": "max |a - b| / max(1, max |reference|)"},
    }
    if "gated" in rec.frames:
        report["kernel_mac_ratio"] = float(inputs["gated.reference.macs"] / inputs["gated.reference.dense_macs"])
    report["x86"] = x86_part(rec, inputs, build_dir, files, repeat, rounds)
    report["x86_time_ratio"] = report["x86"].get("time_ratio")
    if x86_only:
        report["arm"] = {"skipped": "--x86-only"}
    else:
        report["arm"] = arm_part(rec, inputs, build_dir, files, install)
        report["instruction_ratio"] = report["arm"].get("instructions", {}).get("ratio")
    report["passed"] = report["x86"]["agreement"]["passed"] and report["arm"].get("agreement", {"passed": True})["passed"]
    png = write_report(out, report, figure(report))
    log(f"wrote {out} and {png}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framegate.benchmarks.arm", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="report path (a PNG is written beside it)")
    parser.add_argument("--gated", type=Path, help="gated Transformer bundle (default: random weights, recipe size)")
    parser.add_argument("--convrnnt", type=Path, help="ConvRNN-T bundle (default: random weights, recipe size)")
    parser.add_argument("--manifest", type=Path, default=toolchain.REPO / "data/corpus/test.jsonl")
    parser.add_argument("--seconds", type=float, default=12.0, help="audio to record (whole utterances)")
    parser.add_argument("--threshold", type=float, help="gated threshold (default: a given bundle's default_threshold; random weights: about "
                        "half the gates on)")
    parser.add_argument("--build-dir", type=Path, default=toolchain.REPO / "build/arm",
                        help="driver builds and the qemu plugin (reused across runs)")
    parser.add_argument("--work-dir", type=Path, help="this run's files (default: BUILD_DIR/runs/<report name>)")
    parser.add_argument("--repeat", type=int, default=5, help="passes per timed x86 driver run")
    parser.add_argument("--rounds", type=int, default=3, help="gated/dense alternations of the x86 timing")
    parser.add_argument("--x86-only", action="store_true", help="skip the cross build and qemu")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing Debian packages")
    args = parser.parse_args(argv)
    try:
        report = run(args.json, args.manifest, args.seconds, args.gated, args.convrnnt, args.threshold,
                     args.build_dir, args.x86_only, not args.no_install, args.repeat, args.rounds, args.work_dir)
    except (toolchain.ToolchainError, FramegateError, ValueError, OSError) as e:
        print(f"framegate.benchmarks.arm: error: {e}", file=sys.stderr)
        return 2
    summary = {k: report.get(k) for k in ("fraction_on", "kernel_mac_ratio", "instruction_ratio", "x86_time_ratio",
                                          "passed")}
    print(json.dumps(summary))
    if not report["passed"]:
        print("framegate.benchmarks.arm: agreement check failed (see the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
