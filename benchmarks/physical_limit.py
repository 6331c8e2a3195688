"""The physical limit: this machine's single-thread sgemm peak, and the model's MACs against it.

sgemm peak: the best of a few large float32 matrix products through numpy's OpenBLAS in a
child process with one BLAS thread. The child drops OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE (set on some machines here for old OpenBLAS builds; they force a slower
kernel on a current numpy) and reports the kernel threadpoolctl says it then runs.

Model MACs: counted analytically from the bundle's encoder graph and shapes, per encoder
window as the engine runs it: each Conv over the window (output size from its strides and
kernel, no padding), each MatMul with a weight initializer over the window's encoder
frames, each MatMul inside a Loop (a spelled-out LSTM's recurrent steps) and each ONNX
LSTM op's input and recurrent weights (W and R; int8 DynamicQuantizeLSTM alike) once per encoder frame,
plus one joiner call per encoder frame (greedy search's minimum; the decoder runs per
emitted token and is left out). Element-wise gate math is not MACs and is not counted.
That count reads LSTM transducer graphs; `run_macs` takes a ConvRNN-T's count from bundle.json
(counted at export from the torch model, same rules) and a gated bundle's from the MACs its
streams really executed (compute telemetry), since its gates decide them.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SGEMM_SIZE = 2048
SGEMM_REPEATS = 5
BLAS_ENV_DROPPED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _sgemm_child(size: int, repeats: int) -> dict:
    """Runs in the child: best-of-`repeats` time of one (size x size) @ (size x size) product."""
    import time

    import numpy as np
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up: page in, pick the kernel
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    blas = [{k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for info in threadpool_info() if info.get("user_api") == "blas"]
    macs = float(size) ** 3
    return {"size": size, "repeats": repeats, "best_s": best, "macs_per_s": macs / best,
            "gflops": 2 * macs / best / 1e9, "blas": blas}


def sgemm_peak(size: int = SGEMM_SIZE, repeats: int = SGEMM_REPEATS) -> dict:
    """Single-thread sgemm peak measured in a child process with a clean BLAS environment."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV_DROPPED}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "framegate.benchmarks.physical_limit", str(size), str(repeats)],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    result["dropped_env"] = [k for k in BLAS_ENV_DROPPED if k in os.environ]
    return result


def _conv_out(length: int, kernel: int, stride: int, dilation: int) -> int:
    return (length - dilation * (kernel - 1) - 1) // stride + 1


def model_macs(bundle_dir: Path) -> dict:
    """MACs per encoder window and per second of audio for an LSTM transducer bundle."""
    import onnx

    bundle_dir = Path(bundle_dir)
    manifest = json.loads((bundle_dir / "bundle.json").read_text(encoding="utf-8"))
    enc, features = manifest["encoder"], manifest["features"]
    graph = onnx.load(str(bundle_dir / "encoder.onnx")).graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    height, width = enc["window_frames"], features["num_bins"]
    conv = matmul = loop = 0
    frames = None
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            if any(attrs.get("pads", [0])):
                raise ValueError(f"encoder.onnx: Conv {node.name} pads; the MAC count assumes none")
            c_out, c_in_per_group, k_h, k_w = shapes[node.input[1]]
            s_h, s_w = attrs.get("strides", [1, 1])
            d_h, d_w = attrs.get("dilations", [1, 1])
            height, width = _conv_out(height, k_h, s_h, d_h), _conv_out(width, k_w, s_w, d_w)
            conv += c_out * c_in_per_group * k_h * k_w * height * width
            frames = height
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in shapes:
            k, n = shapes[node.input[1]]
            matmul += k * n  # times the encoder frames of the window, below
        elif node.op_type == "Loop":
            body = next(a.g for a in node.attribute if a.name == "body")
            for inner in body.node:
                if inner.op_type in ("MatMul", "Gemm") and inner.input[1] in shapes:
                    k, n = shapes[inner.input[1]]
                    loop += k * n  # once per recurrent step = per encoder frame
        elif node.op_type in ("LSTM", "DynamicQuantizeLSTM"):  # W and R (int8: transposed), once per frame
            for weight in node.input[1:3]:
                loop += math.prod(shapes[weight])
    if frames is None:
        raise ValueError("encoder.onnx: no Conv front end found; the MAC count is for the LSTM transducer")
    joiner = onnx.load(str(bundle_dir / "joiner.onnx")).graph
    joiner_shapes = {i.name: list(i.dims) for i in joiner.initializer}
    joiner_macs = 0
    for node in joiner.node:
        if node.op_type in ("MatMul", "Gemm") and node.input[1] in joiner_shapes:
            k, n = joiner_shapes[node.input[1]]
            joiner_macs += k * n
    per_window = {"conv": conv, "matmul": matmul * frames, "recurrent": loop * frames, "joiner": joiner_macs * frames}
    windows_per_s = 1000 / (enc["chunk_frames"] * features["frame_shift_ms"])
    total = sum(per_window.values())
    return {"per_window": per_window, "encoder_frames_per_window": frames, "windows_per_s": windows_per_s,
            "macs_per_window": total, "macs_per_audio_s": total * windows_per_s}


def run_macs(bundle_dir: Path, manifest: dict, records: list[dict]) -> dict:
    """MACs per audio second of the run whose utterance `records` (framegate's) are given.

    LSTM transducer: the graph count above. Gated Transformer: encoder MACs executed, summed
    from each utterance's compute telemetry (`executed_macs`, `dense_macs`), beside the dense count.
    Otherwise bundle.json's `compute.macs_per_second`."""
    model_type = manifest["model_type"]
    if model_type == "lstm_transducer":
        return {**model_macs(bundle_dir), "source": "encoder.onnx and joiner.onnx graphs"}
    dense = manifest.get("compute", {}).get("macs_per_second")
    if dense is None:
        raise ValueError(f"bundle.json of a {model_type} bundle records no compute.macs_per_second")
    if "gating" in manifest:
        audio_s = sum(r["audio_s"] for r in records)
        executed = sum(r["executed_macs"] for r in records)
        return {"macs_per_audio_s": executed / audio_s, "dense_macs_per_audio_s": dense,
                "executed_fraction": executed / sum(r["dense_macs"] for r in records),
                "source": "encoder MACs executed (compute telemetry: the gate decisions taken)"}
    return {"macs_per_audio_s": dense, "source": "bundle.json compute.macs_per_second (counted at export)"}


if __name__ == "__main__":
    print(json.dumps(_sgemm_child(int(sys.argv[1]), int(sys.argv[2]))))
