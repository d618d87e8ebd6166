#!/usr/bin/env bash
# Creates the virtualenv and installs the locked runtime packages.
# llama-cpp-python ships only as source: its wheel is built once into
# $VOICE_AGENT_WHEELS (about 10 minutes on 2 cores) and reused afterwards.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
lock=${3:-requirements.lock}
wheels=${VOICE_AGENT_WHEELS:-$HOME/.cache/voice-agent/wheels}

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: Python 3.11 is required ($python is $("$python" --version 2>&1)); set PYTHON=python3.11" >&2
  exit 1
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
mkdir -p "$wheels"
llama=$(grep -iE '^llama[-_]cpp[-_]python==' "$lock" | head -n1)
version=${llama#*==}
if ! ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  echo "building $llama once into $wheels (about 10 minutes on 2 cores)..."
  "$venv/bin/pip" wheel --quiet --no-deps "$llama" -w "$wheels"
fi
# The lock lists every package with its exact version, so nothing is resolved at install
# time; --no-deps also keeps silero-vad from pulling in torch (we use its ONNX file only).
"$venv/bin/pip" install --quiet --no-deps --find-links "$wheels" -r "$lock"
