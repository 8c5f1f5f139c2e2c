#!/usr/bin/env bash
# Builds the job image (docker/job.Dockerfile) as calls-offloader-job:<version> and :latest.
#   docker/build-job-image.sh                  FROM node:20-bookworm-slim (needs a registry)
#   docker/build-job-image.sh --local-base     FROM a Debian 12 root made here with debootstrap and
#                                              this host's node binary (no registry needed; needs root)
#   WHISPER_MODELS="tiny base" ...             bakes those whisper.cpp models in (models/ggml-*.bin
#                                              already on this host, or fetched where reachable)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
version=$(node -p "require('./package.json').version")
stage=.job-image
rm -rf "$stage" && mkdir -p "$stage/app"
npm run build >/dev/null
cp -r dist package.json package-lock.json patches "$stage/app/"
rm -rf "$stage/app/dist/test" "$stage/app/dist/bench"
cp docker/job-entrypoint.sh "$stage/app/"
(cd "$stage/app" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund --ignore-scripts >/dev/null)
# patches/ (see patches/README.md) with this host's patch-package: the image has no dev packages
(cd "$stage/app" && node "$repo/node_modules/patch-package/index.js" >/dev/null && rm -r patches)
node docker/prune-job-modules.mjs "$stage/app"
mkdir -p "$stage/app/models"
for size in ${WHISPER_MODELS:-}; do
  if [ -f "models/ggml-$size.bin" ]; then cp "models/ggml-$size.bin" "$stage/app/models/";
  else (cd "$stage/app" && node dist/workers/transcriber/fetch-model.js "$size"); fi
done
base=node:20-bookworm-slim
if [ "${1:-}" = "--local-base" ]; then
  base=calls-offloader-base:bookworm
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
    cp "$(command -v node)" "$root/usr/local/bin/node"
    rm -rf "$root/var/cache/apt/archives"/*.deb
    tar -C "$root" -c . | docker import - "$base" >/dev/null
    rm -rf "$root"
  fi
fi
DOCKER_BUILDKIT=0 docker build --network host -q -f docker/job.Dockerfile --build-arg BASE="$base" \
  -t "calls-offloader-job:$version" -t calls-offloader-job:latest .
docker image ls calls-offloader-job:latest --format 'calls-offloader-job:{{.Tag}} {{.Size}}'
