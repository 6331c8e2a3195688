#!/usr/bin/env bash
# One-shot setup on a fresh Debian 12 machine with Python 3.11: the Debian packages
# framegate needs (speech synthesizers for the offline corpus, audio libraries),
# a virtual environment in .venv, and framegate installed into it with its extras.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

enable_contrib_non_free() {
  # The mbrola, pico and RHVoice voices live in Debian's contrib and non-free parts.
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    $SUDO sed -i -E '/^Components:/{/contrib/!s/$/ contrib/; /non-free( |$)/!s/$/ non-free/}' \
      /etc/apt/sources.list.d/debian.sources
  elif [ -f /etc/apt/sources.list ]; then
    $SUDO sed -i -E '/^deb /{/contrib/!s/$/ contrib/; / non-free( |$)/!s/$/ non-free/}' /etc/apt/sources.list
  fi
}

DEBIAN_PACKAGES=(
  build-essential cmake ninja-build python3-venv python3-dev
  libportaudio2 libsndfile1 sox alsa-utils clang libclang-rt-14-dev tmux
  fortunes fortunes-min wamerican
  espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
  mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6 mbrola-gr2 mbrola-ro1
  mbrola-nl2 mbrola-fr1 mbrola-fr4 mbrola-hu1 mbrola-sw1 mbrola-sw2 mbrola-af1 mbrola-pl1
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
  festvox-rablpc16k festvox-don festvox-us1 festvox-us2 festvox-us3 festvox-en1
  libttspico-utils rhvoice rhvoice-english
)

if [ "${FRAMEGATE_SKIP_APT:-0}" != "1" ]; then
  enable_contrib_non_free
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch 2.13.0 is the CPU build; pin it first so no extra pulls a CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q ".[train,bench,dev,web]"
# Sanitizer and fuzzing builds of the C++ kernels, so the tests only run them.
cpp/build_checks.sh asan tsan fuzz >/dev/null
