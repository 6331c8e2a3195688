"""Graceful stop: the first SIGTERM/SIGINT becomes a flag, the training loops save a resumable
checkpoint and return without the files of a finished run; a second signal still ends the process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from framegate.export.models.lstm_transducer import LstmTransducerConfig
from framegate.export.models.speaker_embedding import SpeakerEmbeddingConfig
from framegate.export.stop_request import StopRequest
from framegate.export.train import TrainConfig, Trainer
from framegate.export.train_speaker import SpeakerTrainConfig, SpeakerTrainer

TINY_MODEL = dict(vocab_size=40, conv_channels=8, d_model=32, rnn_hidden_size=48, num_layers=1,
                  joiner_dim=32, decoder_dim=32)  # as tests/export/test_train.py


class UnhandledSigterm(Exception):
    """Raised by the guard handler: a SIGTERM that StopRequest should have taken reached it."""


def _guard(signum, frame) -> None:
    raise UnhandledSigterm(signum)


@pytest.fixture
def guarded_handlers():
    """SIGTERM raises instead of ending the test session; SIGINT is Python's KeyboardInterrupt."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _guard)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_sets_the_flag_and_the_process_goes_on(guarded_handlers, sig) -> None:
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)
        assert stop.requested


def test_leaving_puts_the_previous_handlers_back(guarded_handlers) -> None:
    with StopRequest():
        assert signal.getsignal(signal.SIGTERM) is not _guard
    assert signal.getsignal(signal.SIGTERM) is _guard
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_of_either_kind_falls_through_to_the_previous_handler(guarded_handlers, first) -> None:
    with StopRequest():
        os.kill(os.getpid(), first)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(UnhandledSigterm):
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_second_sigterm_with_the_default_action_ends_the_process() -> None:
    code = ("import os, signal\n"
            "from framegate.export.stop_request import StopRequest\n"
            "with StopRequest() as stop:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    assert stop.requested\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    print('survived')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert "survived" not in proc.stdout


def test_off_the_main_thread_no_handler_is_installed(guarded_handlers) -> None:
    seen = {}

    def worker() -> None:
        with StopRequest() as stop:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["requested"] = stop.requested

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"handler": _guard, "requested": False}


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path.name} after {timeout_s} s")
        time.sleep(0.2)


def test_sigterm_stops_training_with_a_checkpoint_that_resumes(tiny_corpus: Path, tmp_path: Path) -> None:
    work = tmp_path / "stopped"
    # milestones every step are the evidence of progress; no periodic checkpoint within the test
    settings = dict(corpus_dir=str(tiny_corpus), work_dir=str(work), max_batch_frames=4000, warmup_steps=5,
                    peak_lr=3e-3, checkpoint_minutes=60.0, eval_every_steps=1000, milestone_every_steps=1,
                    dev_utterances=4, threads=1, spec_augment_after=1000, feature_workers=1)
    code = ("import json, sys\n"
            "from framegate.export.models.lstm_transducer import LstmTransducerConfig\n"
            "from framegate.export.train import TrainConfig, Trainer\n"
            "s = json.loads(sys.argv[1])\n"
            "finished = Trainer(TrainConfig(model=LstmTransducerConfig(**s.pop('model')), **s)).train()\n"
            "print('finished' if finished else 'not finished')\n")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(dict(settings, max_steps=100_000,
                                                                         model=TINY_MODEL))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    _wait_for(work / "weights_step2.pt", proc, timeout_s=240)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    step = torch.load(work / "checkpoint.pt", weights_only=False)["step"]
    assert step >= 2
    assert f"stop requested: saving a checkpoint at step {step}" in out and "not finished" in out
    assert not (work / "weights_last.pt").exists()  # only a finished run has it

    resumed = Trainer(TrainConfig(model=LstmTransducerConfig(**TINY_MODEL), max_steps=step + 1, **settings))
    assert resumed.step == step
    assert resumed.train() is True
    assert torch.load(work / "weights_last.pt", weights_only=False)["step"] == step + 1


def test_speaker_training_stops_with_a_checkpoint_and_no_bundle(guarded_handlers, tiny_corpus: Path,
                                                                tmp_path: Path) -> None:
    work = tmp_path / "spk"
    trainer = SpeakerTrainer(SpeakerTrainConfig(
        corpus_dir=str(tiny_corpus), work_dir=str(work), speakers_per_batch=6, utterances_per_speaker=2,
        segment_frames=60, max_steps=50, warmup_steps=2, eval_every_steps=1000, threads=1, feature_workers=1,
        model=SpeakerEmbeddingConfig(channels=8, pooled_channels=12, embedding_dim=4)))
    step = trainer.train_step

    def step_then_sigterm(x: torch.Tensor, labels: torch.Tensor) -> dict:
        record = step(x, labels)
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return record

    trainer.train_step = step_then_sigterm
    assert trainer.train() is None
    assert torch.load(work / "checkpoint.pt", weights_only=False)["step"] == 2
    assert not (work / "weights_last.pt").exists() and not (work / "bundle").exists()
    assert signal.getsignal(signal.SIGTERM) is _guard
