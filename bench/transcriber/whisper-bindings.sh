#!/usr/bin/env bash
# The whisper.cpp bindings bench/transcriber compares with the project's (bench only, never in CI):
# smart-whisper 0.8.1 compiled here from whisper.cpp's sources with the machine's SIMD
# (-march=native), and @fugood/node-whisper-linux-x64 1.1.3, the prebuilt binding the project used
# before (no SIMD). Both from the npm registry into .bench/whisper-bindings (git-ignored).
# node-gyp needs Node's headers: the machine's (nodedir=/usr), nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=.bench/whisper-bindings
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || echo '{"name":"whisper-bindings","private":true}' > package.json
npm install --no-audit --no-fund --ignore-scripts smart-whisper@0.8.1 @fugood/node-whisper-linux-x64@1.1.3 >/dev/null
cd node_modules/smart-whisper
CFLAGS='-march=native' CXXFLAGS='-march=native' npm_config_nodedir=/usr node "$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js" rebuild >/dev/null
echo "whisper bindings ready in $(pwd)/.."
