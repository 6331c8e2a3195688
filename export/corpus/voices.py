"""The catalogue of offline voices, their speaker families, held-out splits and licences.

A family is one underlying speaker or accent, whichever synthesizer renders it: CMU's "slt"
through flite, festival and RHVoice is one family, and every espeak-ng variant of an accent is
one family. Splits are made by family so no held-out speaker leaks into training.
"""

from dataclasses import dataclass
from pathlib import Path

from framegate.export.corpus import CorpusError

SYNTHESIZERS = ("espeak-ng", "mbrola", "flite", "festival", "pico", "rhvoice", "piper")
# Recorded human speakers (as opposed to espeak-ng's formant rules).
RECORDED_SYNTHESIZERS = frozenset(SYNTHESIZERS) - {"espeak-ng"}
ESPEAK_DATA_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data"),
    Path("/usr/lib/aarch64-linux-gnu/espeak-ng-data"),
    Path("/usr/share/espeak-ng-data"),
)


@dataclass(frozen=True)
class Voice:
    """One voice: `name` is "<synthesizer>:<voice_id>" and is the manifest's speaker."""

    synthesizer: str
    voice_id: str  # what the synthesizer is given: "en-us+Andy", "mb-us1", "slt", "voice_kal_diphone"...
    family: str
    accent: str
    gender: str

    @property
    def name(self) -> str:
        return f"{self.synthesizer}:{self.voice_id}"


TEST_FAMILIES = frozenset({"espeak-en-gb-scotland", "mbrola-us3", "mbrola-de2", "rms", "bdl", "pico-en-gb"})
DEV_FAMILIES = frozenset({"espeak-en-029", "mbrola-us2", "mbrola-fr1", "ked", "lyubov"})

ESPEAK_ACCENTS = {
    "en-us": "us",
    "en-gb": "gb",
    "en-gb-scotland": "scottish",
    "en-gb-x-rp": "gb-rp",
    "en-gb-x-gbclan": "lancashire",
    "en-gb-x-gbcwmd": "west-midlands",
    "en-029": "caribbean",
    "en-us-nyc": "new-york",
}
# mbrola database -> (accent, gender); the mb-XX-en voices are foreign-accented English.
MBROLA_VOICES = {
    "us1": ("us", "female"), "us2": ("us", "male"), "us3": ("us", "male"), "en1": ("gb", "male"),
    "af1": ("afrikaans", "male"), "de1": ("german", "female"), "de2": ("german", "male"),
    "de3": ("german", "female"), "de4": ("german", "male"), "de5": ("german", "female"),
    "de6": ("german", "male"), "fr1": ("french", "male"), "fr4": ("french", "female"),
    "gr2": ("greek", "male"), "hu1": ("hungarian", "female"), "nl2": ("dutch", "male"),
    "pl1": ("polish", "female"), "ro1": ("romanian", "male"), "sw1": ("swedish", "male"),
    "sw2": ("swedish", "female"),
}
RECORDED_VOICES = (
    Voice("flite", "kal", "kal", "us", "male"),
    Voice("flite", "kal16", "kal", "us", "male"),
    Voice("flite", "awb", "awb", "scottish", "male"),
    Voice("flite", "rms", "rms", "us", "male"),
    Voice("flite", "slt", "slt", "us", "female"),
    Voice("festival", "kal_diphone", "kal", "us", "male"),
    Voice("festival", "ked_diphone", "ked", "us", "male"),
    Voice("festival", "rab_diphone", "rab", "gb", "male"),
    Voice("festival", "don_diphone", "don", "gb", "male"),
    Voice("festival", "us1_mbrola", "mbrola-us1", "us", "female"),
    Voice("festival", "us2_mbrola", "mbrola-us2", "us", "male"),
    Voice("festival", "us3_mbrola", "mbrola-us3", "us", "male"),
    Voice("festival", "en1_mbrola", "mbrola-en1", "gb", "male"),
    Voice("festival", "cmu_us_slt_arctic_hts", "slt", "us", "female"),
    Voice("pico", "en-US", "pico-en-us", "us", "female"),
    Voice("pico", "en-GB", "pico-en-gb", "gb", "female"),
    Voice("rhvoice", "alan", "awb", "scottish", "male"),  # trained on CMU ARCTIC awb, flite's awb speaker
    Voice("rhvoice", "bdl", "bdl", "us", "male"),
    Voice("rhvoice", "clb", "clb", "us", "female"),
    Voice("rhvoice", "slt", "slt", "us", "female"),
    Voice("rhvoice", "evgeniy-eng", "evgeniy", "russian", "male"),
    Voice("rhvoice", "lyubov", "lyubov", "russian", "female"),
    Voice("piper", "en_US-joe-medium", "joe", "us", "male"),
)

# Printed by the model card, keyed by synthesizer or, where a voice differs, by voice name;
# several voices forbid commercial use of what is made with them.
LICENCES = {
    "espeak-ng": "GPL-3.0-or-later (espeak-ng and its voice variants)",
    "mbrola": "mbrola binary AGPL-3.0; mbrola diphone databases: non-commercial, non-military use only (Debian contrib/non-free)",
    "flite": "flite and its CMU voices kal, kal16, awb, rms, slt: BSD-style CMU licence",
    "festival": "festival X11-style; festvox kal/ked diphones BSD-style",
    "festival:rab_diphone": "festvox rab: voice BSD-style, but its OALD lexicon is non-commercial only",
    "festival:don_diphone": "festvox don: voice BSD-style, but its OALD lexicon is non-commercial only",
    **{f"festival:{db}_mbrola": "needs the mbrola databases: non-commercial, non-military only" for db in ("us1", "us2", "us3", "en1")},
    "festival:cmu_us_slt_arctic_hts": "BSD-3-Clause (CMU ARCTIC slt, HTS voice)",
    "pico": "SVOX pico Apache-2.0, language data without source (Debian non-free)",
    "rhvoice": "RHVoice LGPL-2.1-or-later; alan/bdl/clb/slt trained on CMU ARCTIC (BSD-style)",
    "rhvoice:evgeniy-eng": "CC BY-NC-ND 4.0: non-commercial only",
    "rhvoice:lyubov": "CC BY-NC-ND 4.0: non-commercial only",
    "piper": "piper-tts GPL-3.0; voice en_US-joe-medium: dataset CC0 (its model card), fine-tuned from the lessac voice",
}


def espeak_data_dir() -> Path:
    """The installed espeak-ng-data directory (its `voices/!v` holds the voice variants)."""
    for path in ESPEAK_DATA_DIRS:
        if (path / "voices" / "!v").is_dir():
            return path
    raise CorpusError("espeak-ng-data with voices/!v not found; install the Debian package espeak-ng-data")


def _variant_gender(path: Path) -> str:
    """A variant's declared gender; variants that declare none keep the (male) accent voice's."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "gender":
            return fields[1].lower()
    return "male"


def espeak_voices() -> tuple[Voice, ...]:
    """Every espeak-ng English accent, plain and with every installed variant, in name order."""
    variants = sorted((p for p in (espeak_data_dir() / "voices" / "!v").iterdir() if p.is_file()), key=lambda p: p.name)
    voices = []
    for accent_id, accent in ESPEAK_ACCENTS.items():
        family = f"espeak-{accent_id}"
        voices.append(Voice("espeak-ng", accent_id, family, accent, "male"))
        voices += [Voice("espeak-ng", f"{accent_id}+{v.name}", family, accent, _variant_gender(v)) for v in variants]
    return tuple(voices)


def mbrola_voices() -> tuple[Voice, ...]:
    """The mbrola databases as espeak-ng drives them (mb-us1, mb-de2-en, ...)."""
    return tuple(
        Voice("mbrola", f"mb-{db}" if db.startswith(("us", "en")) else f"mb-{db}-en", f"mbrola-{db}", accent, gender)
        for db, (accent, gender) in MBROLA_VOICES.items()
    )


def all_voices() -> tuple[Voice, ...]:
    """The whole catalogue in a fixed order."""
    return espeak_voices() + mbrola_voices() + RECORDED_VOICES


def family_split(family: str) -> str:
    """"test", "dev" or "train" for a voice family."""
    return "test" if family in TEST_FAMILIES else "dev" if family in DEV_FAMILIES else "train"


def voices_by_split() -> dict[str, tuple[Voice, ...]]:
    """The catalogue partitioned by `family_split`."""
    voices = all_voices()
    return {split: tuple(v for v in voices if family_split(v.family) == split) for split in ("train", "dev", "test")}

