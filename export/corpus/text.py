"""Sentences from Debian's fortunes, normalized so the synthesized audio says exactly the label."""

import hashlib
import re
import unicodedata
from pathlib import Path

FORTUNE_DIR = Path("/usr/share/games/fortunes")
SKIPPED_FILES = frozenset({"ascii-art"})  # pictures made of characters, not sentences
MIN_WORDS = 3
MAX_WORDS = 24
SPLITS = ("train", "dev", "test")

# Verbalized before sentence splitting too, so "Mr. Smith" is not cut at its period.
ABBREVIATIONS = {
    "mr.": "mister",
    "mrs.": "missus",
    "dr.": "doctor",
    "st.": "saint",
    "jr.": "junior",
    "sr.": "senior",
    "prof.": "professor",
    "mt.": "mount",
    "vs.": "versus",
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
    "&": "and",
}
_ABBREVIATION_RE = re.compile(
    r"(?<![a-z])(" + "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True)) + r")",
    re.IGNORECASE,
)
# Characters a synthesizer would read aloud (or spell out); a sentence with one is unusable.
_SPOKEN_RE = re.compile(r"[0-9%$@#+=/*<>^~|\\_\[\]{}§°€£]")
# Upper-case runs like "IBM" or "II" are spelled out letter by letter, unlike their label.
_ACRONYM_RE = re.compile(r"\b[A-Z]{2,}\b")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u201c": '"', "\u201d": '"'})


def _verbalize(text: str) -> str:
    return _ABBREVIATION_RE.sub(lambda m: " " + ABBREVIATIONS[m.group(1).lower()] + " ", text)


def normalize_text(text: str) -> str | None:
    """Return the label form of `text` ([a-z' ] words, single spaces) or None if it is unspeakable as written.

    None means the text holds digits, spoken symbols, acronyms or letters outside a-z, whose
    pronunciation would differ between synthesizers and the label; such text is dropped, not guessed.
    """
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    if _ACRONYM_RE.search(text) and not text.isupper():
        return None
    text = _verbalize(text.lower())
    if _SPOKEN_RE.search(text):
        return None
    if any(c.isalpha() and not "a" <= c <= "z" for c in text):
        return None
    text = re.sub(r"[^a-z']+", " ", text)
    words = [w.strip("'") for w in text.split()]
    words = [w for w in words if w]
    return " ".join(words) if words else None


def _fortune_entries(path: Path) -> list[str]:
    """One fortune per entry, lines joined, attribution lines ("-- Author") removed."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    entries = []
    for block in raw.split("\n%\n"):
        lines = [line.strip() for line in block.splitlines()]
        lines = [line for line in lines if line and line != "%" and not line.startswith("--")]
        if lines:
            entries.append(" ".join(lines))
    return entries


def fortune_files(fortune_dir: Path = FORTUNE_DIR) -> list[Path]:
    """Plain fortune files in name order; the `off/` offensive directory, index and .u8 links are skipped."""
    return sorted(
        p
        for p in fortune_dir.iterdir()
        if p.is_file() and not p.is_symlink() and p.suffix == "" and p.name not in SKIPPED_FILES
    )


def _all_sentences(fortune_dir: Path) -> list[str]:
    """Every unique normalized sentence of any length, in a deterministic order."""
    seen: dict[str, None] = {}
    for path in fortune_files(fortune_dir):
        for entry in _fortune_entries(path):
            for piece in _SENTENCE_END_RE.split(_verbalize(entry)):
                sentence = normalize_text(piece)
                if sentence:
                    seen.setdefault(sentence)
    return list(seen)


def load_sentences(fortune_dir: Path = FORTUNE_DIR) -> list[str]:
    """Unique normalized sentences of MIN_WORDS..MAX_WORDS words (what is synthesized), in a deterministic order."""
    return [s for s in _all_sentences(fortune_dir) if MIN_WORDS <= len(s.split()) <= MAX_WORDS]


def training_text(fortune_dir: Path = FORTUNE_DIR) -> list[str]:
    """Every sentence of the train split, of any length: text for a language model.

    A corpus synthesizes only some of these (its hours run out, and too short or long
    sentences make poor utterances); a language model gains from all of them, and the
    split's hash keeps every dev and test sentence out."""
    return split_sentences(_all_sentences(fortune_dir))["train"]


def sentence_split(sentence: str) -> str:
    """The split a sentence belongs to, from a stable hash: 85 % train, 5 % dev, 10 % test."""
    bucket = int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:4], "big") % 100
    return "test" if bucket < 10 else "dev" if bucket < 15 else "train"


def split_sentences(sentences: list[str]) -> dict[str, list[str]]:
    """Sentences grouped by `sentence_split`, each group in input order; the groups are disjoint."""
    groups: dict[str, list[str]] = {split: [] for split in SPLITS}
    for sentence in sentences:
        groups[sentence_split(sentence)].append(sentence)
    return groups
