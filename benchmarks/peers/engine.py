"""framegate itself: throughput, then the real-time-pace latency passes.

Throughput (RTF, tokens for the agreement check): every utterance plus the shared flush
pad is fed in 100 ms blocks back to back, as a live source delivers them and as every peer
is fed (`framegate transcribe` reads files in longer blocks, engine/cli.py), with
endpointing off so each file is one utterance, as in the peers. Latency: the utterance
followed by `tail_s` of digital silence, fed in `block_ms` blocks at real-time pace with
the default endpoint rules on; every utterance on the virtual clock, the first
`real_time_utts` also at true wall-clock pace (benchmarks/realtime.py). The job's `search`
is "greedy" (as the peers decode, whatever the bundle's default: their tokens are compared)
or "bundle" (the bundle's own search, e.g. beam search with its language model). The job's
`passes` say which of the two run ("throughput", "paced"): the benchmark takes the
throughput passes of every engine in turn, utterance by utterance, and the paced passes apart.
"""
from __future__ import annotations

import time

import numpy as np

from framegate.benchmarks.peers import Decode
from framegate.benchmarks.realtime import RATE, PacedRun, WindowCountingRecognizer, run_paced
from framegate.engine.endpoint import EndpointConfig

ENGINE = "framegate"


def _paced_record(run: PacedRun) -> dict:
    return {"tokens": run.tokens, "first_token_s": run.first_token_s, "last_word_s": run.last_word_s,
            "last_word_arrival_s": run.last_word_arrival_s, "last_token_s": run.last_token_s,
            "last_token_arrival_s": run.last_token_arrival_s, "endpoint_s": run.endpoint_s,
            "compute_s": run.compute_s}


def load(job: dict) -> Decode:
    greedy = {"beam": 1, "lm_weight": 0.0} if job.get("search", "greedy") == "greedy" else {}
    recognizer = WindowCountingRecognizer(job["bundle"], num_threads=job["threads"], endpoint=None, **greedy)
    flush = np.zeros(round(job["flush_pad_s"] * RATE), dtype=np.float32)
    step = round(job["throughput_block_s"] * RATE)
    paced = job["paced"]
    block = round(paced["block_ms"] * RATE / 1000)
    tail = np.zeros(round(paced["tail_s"] * RATE), dtype=np.float32)
    passes = set(job["passes"])

    def throughput(utt: dict) -> dict:
        samples = np.concatenate([np.load(utt["npy"]), flush])
        recognizer.endpoint = None
        started = time.perf_counter()
        stream = recognizer.create_stream()
        for i in range(0, len(samples), step):
            stream.accept_waveform(RATE, samples[i:i + step])
            recognizer.decode(stream)
        stream.input_finished()
        recognizer.decode(stream)
        compute_s = time.perf_counter() - started
        result = stream.result
        record = {"tokens": result.tokens, "text": result.text, "compute_s": compute_s,
                  "audio_s": len(samples) / RATE}
        telemetry = stream.compute_telemetry
        if telemetry is not None:  # a gated encoder: the MACs its gates let run
            record.update(executed_macs=telemetry.macs, dense_macs=telemetry.dense_macs)
        return record

    def latency(index: int, utt: dict) -> dict:
        live = np.concatenate([np.load(utt["npy"]), tail])
        recognizer.endpoint = EndpointConfig()
        virtual = run_paced(recognizer, live, block, real_time=False)
        record = {"virtual": _paced_record(virtual), "chunk_compute_s": virtual.chunk_compute_s}
        if index < paced["real_time_utts"]:
            real = run_paced(recognizer, live, block, real_time=True)
            record["real_time"] = {**_paced_record(real), "chunk_compute_s": real.chunk_compute_s}
        return record

    def decode(index: int, utt: dict) -> dict:
        record = {"id": utt["id"]}
        if "throughput" in passes:
            record.update(throughput(utt))
        if "paced" in passes:
            record.update(latency(index, utt))
        return record

    return decode
