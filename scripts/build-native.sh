#!/usr/bin/env bash
# Builds into dist/bin what is written in C:
# - SRTP's ciphers addon (src/sfu/srtp-native.c), against the running node's own headers (its
#   Node-API and OpenSSL). Without them it says so and goes on: werift's own SRTP path is used.
# - The pocketsphinx helper (workers/transcriber/speech/pocketsphinx-server.c). Without
#   libpocketsphinx-dev it says so and goes on: only the pocketsphinx engine needs it, and a job
#   asking for it then fails at start naming what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/bin

src=src/sfu/srtp-native.c
out=dist/bin/srtp-native.node
headers="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node"
if [ ! -f "$headers/node_api.h" ] || [ ! -f "$headers/openssl/evp.h" ]; then
  echo "build-native: node's headers (node_api.h, openssl/evp.h) not in $headers; SRTP stays on werift's ciphers" >&2
elif [ ! "$out" -nt "$src" ]; then
  # Bound at load (-z now): on a node without OpenSSL's symbols the require fails and werift's
  # ciphers run, rather than the first packet ending the process.
  cc -O2 -Wall -Wextra -fPIC -shared -Wl,-z,now -I"$headers" -o "$out" "$src"
fi

src=workers/transcriber/speech/pocketsphinx-server.c
out=dist/bin/pocketsphinx-server
if ! pkg-config --exists pocketsphinx 2>/dev/null; then
  echo "build-native: libpocketsphinx-dev not found; the pocketsphinx engine is not built" >&2
  exit 0
fi
if [ ! "$out" -nt "$src" ]; then
  cc -O2 -Wall -o "$out" "$src" $(pkg-config --cflags --libs pocketsphinx)
fi
