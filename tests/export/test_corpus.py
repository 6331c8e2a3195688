"""The offline corpus builder: normalized labels, disjoint splits, complete manifests, determinism, loud failures."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framegate.engine.cli import main
from framegate.export.corpus import CorpusError
from framegate.export.corpus import build as build_module
from framegate.export.corpus import synth as synth_module
from framegate.export.corpus.build import MANIFEST_KEYS, build_corpus
from framegate.export.corpus.journal import JOURNAL_NAME, exclusive, read_journal
from framegate.export.corpus.merge import merge_corpora
from framegate.export.corpus.synth import synthesize
from framegate.export.corpus.text import load_sentences, normalize_text, sentence_split, split_sentences, training_text
from framegate.export.corpus.voices import Voice, voices_by_split

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("corpus")
    build_corpus(out_dir, hours=0.01, seed=7, workers=2, test_words=40, dev_hours=0.002, progress=False)
    return out_dir


def _manifest(out_dir: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out_dir / f"{split}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("Mr. Smith & Dr. Jones met at St. Paul's, etc.", "mister smith and doctor jones met at saint paul's et cetera"),
        ('"Don\'t   panic!" -- she said.', "don't panic she said"),
        ("I have 3 cats.", None),
        ("It costs $5 or 50%", None),
        ("mail me at a@b", None),
        ("IBM rules", None),
    ],
)
def test_normalize_text_verbalizes_drops_and_strips(raw: str, label: str | None) -> None:
    assert normalize_text(raw) == label


def test_sentence_splits_are_disjoint_and_normalized() -> None:
    groups = split_sentences(load_sentences())
    sets = {split: set(group) for split, group in groups.items()}
    assert all(sets.values())
    assert not sets["test"] & sets["train"] and not sets["dev"] & sets["train"] and not sets["test"] & sets["dev"]
    assert all(normalize_text(s) == s and 3 <= len(s.split()) <= 24 for s in groups["test"])


def test_training_text_is_every_train_sentence_of_any_length_and_no_other() -> None:
    """The language model's text: a superset of what a corpus can synthesize, never a dev or test sentence."""
    text = training_text()
    assert len(set(text)) == len(text)
    assert all(sentence_split(s) == "train" and normalize_text(s) == s for s in text)
    synthesizable = split_sentences(load_sentences())
    assert set(synthesizable["train"]) < set(text)
    assert not set(text) & (set(synthesizable["dev"]) | set(synthesizable["test"]))
    lengths = [len(s.split()) for s in text]
    assert min(lengths) < 3 and max(lengths) > 24


def test_voice_families_are_disjoint_across_splits() -> None:
    families = {split: {v.family for v in voices} for split, voices in voices_by_split().items()}
    assert {"espeak-en-gb-scotland", "mbrola-us3", "rms", "bdl"} <= families["test"]
    assert not families["train"] & families["test"] and not families["train"] & families["dev"] and not families["dev"] & families["test"]


def test_manifests_have_exact_keys_and_matching_audio(corpus: Path) -> None:
    families: dict[str, set[str]] = {}
    for split in SPLITS:
        rows = _manifest(corpus, split)
        assert rows, split
        for row in rows:
            assert tuple(row) == MANIFEST_KEYS
            assert row["split"] == split
            info = sf.info(corpus / row["audio"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert abs(info.frames / 16000 - row["duration_s"]) < 1e-3
            if row["text"]:
                assert normalize_text(row["text"]) == row["text"] and 0.5 < row["duration_s"] < 20
                assert row["speaker"].startswith(row["synthesizer"] + ":") and row["family"]
        families[split] = {row["family"] for row in rows if row["family"]}
    assert not families["train"] & families["test"] and not families["train"] & families["dev"]
    assert sum(len(r["text"].split()) for r in _manifest(corpus, "test")) >= 40


def test_every_split_has_empty_transcript_segments(corpus: Path) -> None:
    for split in SPLITS:
        empty = [row for row in _manifest(corpus, split) if row["text"] == ""]
        assert empty and all(0.5 <= row["duration_s"] <= 4.0 and row["speaker"] == "" for row in empty)


def test_same_seed_gives_identical_corpus_for_any_worker_count(corpus: Path, tmp_path: Path) -> None:
    build_corpus(tmp_path, hours=0.01, seed=7, workers=1, test_words=40, dev_hours=0.002, progress=False)
    for split in SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_text() == (corpus / f"{split}.jsonl").read_text()
        for row in _manifest(corpus, split):
            assert np.array_equal(sf.read(corpus / row["audio"])[0], sf.read(tmp_path / row["audio"])[0])


def test_a_stopped_build_resumes_to_the_same_corpus_rendering_only_the_rest(corpus: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dict(hours=0.01, seed=7, test_words=40, dev_hours=0.002, progress=False)
    real_append, kept = build_module.append, []

    def stop_after_five(journal, row) -> None:
        if len(kept) == 5:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the build
        kept.append(row["audio"])
        real_append(journal, row)

    monkeypatch.setattr(build_module, "append", stop_after_five)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(tmp_path, workers=1, **settings)
    assert (tmp_path / JOURNAL_NAME).is_file() and not (tmp_path / "train.jsonl").exists()
    with pytest.raises(CorpusError, match="other settings"):
        build_corpus(tmp_path, workers=1, **{**settings, "seed": 8})
    stamps = {audio: (tmp_path / audio).stat().st_mtime_ns for audio in kept}
    monkeypatch.setattr(build_module, "append", real_append)
    build_corpus(tmp_path, workers=1, **settings)
    assert {audio: (tmp_path / audio).stat().st_mtime_ns for audio in kept} == stamps  # not rendered again
    for split in SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_text() == (corpus / f"{split}.jsonl").read_text()
        for row in _manifest(corpus, split):
            assert np.array_equal(sf.read(corpus / row["audio"])[0], sf.read(tmp_path / row["audio"])[0])
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_a_journal_whose_first_write_was_cut_short_starts_the_build_over(corpus: Path, tmp_path: Path) -> None:
    (tmp_path / JOURNAL_NAME).write_text('{"settings": {"hou')  # stopped while writing the header
    build_corpus(tmp_path, hours=0.01, seed=7, workers=1, test_words=40, dev_hours=0.002, progress=False)
    for split in SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_text() == (corpus / f"{split}.jsonl").read_text()
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_journal_rows_without_their_audio_are_rendered_again(tmp_path: Path) -> None:
    settings = {"seed": 7}
    (tmp_path / "a.flac").write_bytes(b"x")
    rows = [{"settings": settings}, {"audio": "a.flac", "text": "kept"}, {"audio": "gone.flac"}, {"text": "no audio"},
            ["not", "a", "row"], {"audio": 3}]
    (tmp_path / JOURNAL_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"audio": "cut')
    assert read_journal(tmp_path, settings) == {"a.flac": {"audio": "a.flac", "text": "kept"}}


def test_a_second_build_into_the_same_folder_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    with exclusive(tmp_path):  # as a build running in another process
        with pytest.raises(CorpusError, match="another corpus build is writing into"):
            build_corpus(tmp_path, hours=0.01, seed=7, workers=1, test_words=40, dev_hours=0.002, progress=False)
    assert not (tmp_path / JOURNAL_NAME).exists() and not (tmp_path / "audio").exists()
    with exclusive(tmp_path):  # released when the holder ends
        pass


def _live_processes(session: int | None = None, pid: int | None = None) -> list[int]:
    """Pids of the session's processes (or the one `pid`), zombies aside: reaping orphans is PID 1's
    job, and the PID 1 of some containers and VMs never does it."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, _, sid = stat.read_text().rpartition(")")[2].split()[:4]
        except OSError:  # ended while listed
            continue
        if state != "Z" and session in (None, int(sid)) and pid in (None, int(stat.parent.name)):
            found.append(int(stat.parent.name))
    return found


def _settled_without_live_processes(session: int | None = None, pid: int | None = None) -> bool:
    """True once nothing of the session (or `pid`) runs (SIGKILLed processes take a moment to go)."""
    deadline = time.monotonic() + 5
    while _live_processes(session, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _live_processes(session, pid)


def test_ctrl_c_stops_a_build_at_once_with_one_message_and_keeps_what_it_rendered(tmp_path: Path) -> None:
    """SIGINT to the terminal's process group, as a terminal sends it: the parent alone receives it (each
    worker leads a group of its own, with its synthesizers) and kills those groups as it leaves."""
    build = subprocess.Popen([sys.executable, "-m", "framegate.engine.cli", "corpus", "build", "--hours", "0.02",
                              "--out", str(tmp_path), "--seed", "9", "--splits", "train"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    journal, deadline = tmp_path / JOURNAL_NAME, time.monotonic() + 120
    while not (journal.exists() and journal.read_text().count("\n") > 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(build.pid, signal.SIGINT)
    _, err = build.communicate(timeout=30)
    assert build.returncode == 130, err
    assert "corpus build interrupted" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert len(read_journal(tmp_path, json.loads(journal.read_text().splitlines()[0])["settings"])) > 3
    assert _settled_without_live_processes(session=build.pid)


def test_a_pool_left_mid_sentence_ends_the_synthesizer_and_what_it_started(tmp_path: Path) -> None:
    """Leaving the pool (an error or Ctrl-C in the parent) while a worker synthesizes."""
    pid_file = tmp_path / "pid"
    with build_module.synthesis_pool(1) as pool:
        pool.apply_async(synth_module._run, (["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"],
                                             voices_by_split()["train"][0]))
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _settled_without_live_processes(pid=int(pid_file.read_text()))


def _group_and_sigterm(_: int) -> tuple[bool, object]:
    return os.getpgid(0) == os.getpid(), signal.getsignal(signal.SIGTERM)


def test_workers_lead_their_own_groups_and_die_of_sigterm_at_once() -> None:
    """A Python SIGTERM handler runs between bytecodes only: one landing just before an idle worker
    blocked on the task queue was never handled, and leaving the pool waited for it forever."""
    with build_module.synthesis_pool(2) as pool:
        assert set(pool.map(_group_and_sigterm, range(8))) == {(True, signal.SIG_DFL)}


def test_leaving_a_pool_never_waits_on_its_idle_workers() -> None:
    """The hang the previous test's rule prevents: with a Python handler the 90th, 223rd and 320th pool
    of three runs never finished leaving. A subprocess, so that a hang fails this test, not the run."""
    code = ("from framegate.export.corpus.build import synthesis_pool\n"
            "if __name__ == '__main__':\n"
            "    for _ in range(600):\n"
            "        with synthesis_pool(2) as pool:\n"
            "            pool.map(abs, range(3))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=240)


def test_a_larger_test_split_built_alone_extends_the_default_one(corpus: Path, tmp_path: Path) -> None:
    build_corpus(tmp_path, hours=0.01, seed=7, workers=1, test_words=120, dev_hours=0.002, progress=False,
                 splits=("test",))
    assert not (tmp_path / "train.jsonl").exists() and not (tmp_path / "audio" / "train").exists()
    small = [row for row in _manifest(corpus, "test") if row["text"]]
    large = [row for row in _manifest(tmp_path, "test") if row["text"]]
    assert sum(len(row["text"].split()) for row in large) >= 120 > sum(len(row["text"].split()) for row in small)
    assert large[:len(small)] == small
    for row in small:
        assert np.array_equal(sf.read(corpus / row["audio"])[0], sf.read(tmp_path / row["audio"])[0])
    train_voices = {row["speaker"] for row in _manifest(corpus, "train")}
    assert not train_voices & {row["speaker"] for row in large}
    with pytest.raises(CorpusError, match="splits must be some of"):
        build_corpus(tmp_path, hours=0.01, seed=7, workers=1, progress=False, splits=("validation",))


def test_merge_trains_on_every_build_and_keeps_the_first_ones_held_out_splits(corpus: Path, tmp_path: Path, capsys) -> None:
    more = tmp_path / "more"
    build_corpus(more, hours=0.005, seed=8, workers=1, progress=False, splits=("train",))
    merged = tmp_path / "nested" / "merged"
    assert main(["corpus", "merge", str(corpus), str(more), "--out", str(merged)]) == 0
    assert f"dev and test from {corpus}" in capsys.readouterr().out
    summary = json.loads((merged / "summary.json").read_text())
    train = _manifest(merged, "train")
    expected = _manifest(corpus, "train") + _manifest(more, "train")
    assert [(r["text"], r["speaker"]) for r in train] == [(r["text"], r["speaker"]) for r in expected]
    for row, source in zip(train, [corpus] * len(_manifest(corpus, "train")) + [more] * len(_manifest(more, "train"))):
        original = next(r for r in _manifest(source, "train") if r["text"] == row["text"] and r["speaker"] == row["speaker"])
        assert (merged / row["audio"]).resolve() == (source / original["audio"]).resolve()
    for split in ("dev", "test"):
        rows = _manifest(merged, split)
        assert [{**r, "audio": ""} for r in rows] == [{**r, "audio": ""} for r in _manifest(corpus, split)]
        assert all((merged / r["audio"]).is_file() for r in rows)
    assert summary["seed"] == [7, 8]
    assert summary["splits"]["train"]["utterances"] == len(expected)
    assert summary["splits"]["test"]["words"] == sum(len(r["text"].split()) for r in _manifest(corpus, "test"))


def test_merge_refuses_a_build_that_would_leak_held_out_voices_or_sentences(corpus: Path, tmp_path: Path, capsys) -> None:
    for leak in ({"family": _manifest(corpus, "test")[0]["family"]}, {"text": _manifest(corpus, "dev")[0]["text"]}):
        other = tmp_path / str(len(leak)) / next(iter(leak))
        other.mkdir(parents=True)
        (other / "summary.json").write_text((corpus / "summary.json").read_text())
        row = {**_manifest(corpus, "train")[0], **leak}
        (other / "train.jsonl").write_text(json.dumps(row) + "\n")
        with pytest.raises(CorpusError, match="held-out"):
            merge_corpora([corpus, other], tmp_path / "out")
    assert main(["corpus", "merge", str(corpus), "--out", str(tmp_path / "out")]) == 2
    assert "needs at least two corpora" in capsys.readouterr().err
    with pytest.raises(CorpusError, match="no summary.json"):
        merge_corpora([corpus, tmp_path / "missing"], tmp_path / "out")


def test_missing_synthesizer_binary_raises_corpus_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CorpusError, match="espeak-ng"):
        build_corpus(tmp_path / "out", hours=0.01, seed=0, workers=1, progress=False)


def test_missing_voice_raises_corpus_error_naming_voice_and_package() -> None:
    with pytest.raises(CorpusError, match="no-such-voice.*rhvoice-english"):
        synthesize(Voice("rhvoice", "no-such-voice", "x", "us", "male"), "hello there friend")


def test_a_synthesizer_is_stopped_by_its_cpu_time_and_a_hung_one_by_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    voice = voices_by_split()["train"][0]
    monkeypatch.setattr(synth_module, "CPU_LIMIT_S", 1)
    with pytest.raises(CorpusError, match=r"used more than 1 s of CPU"):
        synth_module._run([sys.executable, "-c", "while True: pass"], voice)
    monkeypatch.setattr(synth_module, "WALL_LIMIT_S", 1.0)
    with pytest.raises(CorpusError, match=r"did not finish within 1 s"):
        synth_module._run([sys.executable, "-c", "import time; time.sleep(30)"], voice)


def test_a_synthesizer_and_what_it_started_end_with_the_call_that_ran_it(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    """The wall-clock limit or Ctrl-C in the caller kills the synthesizer's whole process group (as
    espeak-ng starts mbrola), so nothing outlives a build."""
    voice, pid_file = voices_by_split()["train"][0], tmp_path / "pid"
    forks_and_hangs = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    monkeypatch.setattr(synth_module, "WALL_LIMIT_S", 1.0)
    with pytest.raises(CorpusError, match=r"did not finish within 1 s"):
        synth_module._run(forks_and_hangs, voice)
    started = int(pid_file.read_text())
    assert _settled_without_live_processes(pid=started)
    monkeypatch.setattr(synth_module, "WALL_LIMIT_S", 60.0)
    ctrl_c = threading.Timer(1.0, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    ctrl_c.start()
    with pytest.raises(KeyboardInterrupt):
        synth_module._run(forks_and_hangs, voice)
    ctrl_c.join()
    assert int(pid_file.read_text()) != started and _settled_without_live_processes(pid=int(pid_file.read_text()))
