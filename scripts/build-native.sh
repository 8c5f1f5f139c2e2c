#!/usr/bin/env bash
# Builds the pocketsphinx helper (workers/transcriber/speech/pocketsphinx-server.c) into dist/bin.
# Without libpocketsphinx-dev it says so and goes on: only the pocketsphinx engine needs it, and
# a job asking for it then fails at start naming what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
src=workers/transcriber/speech/pocketsphinx-server.c
out=dist/bin/pocketsphinx-server
mkdir -p dist/bin
if ! pkg-config --exists pocketsphinx 2>/dev/null; then
  echo "build-native: libpocketsphinx-dev not found; the pocketsphinx engine is not built" >&2
  exit 0
fi
if [ ! "$out" -nt "$src" ]; then
  cc -O2 -Wall -o "$out" "$src" $(pkg-config --cflags --libs pocketsphinx)
fi
