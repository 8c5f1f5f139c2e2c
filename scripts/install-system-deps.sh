#!/usr/bin/env bash
# Installs the Debian packages the service and its tests need. Idempotent; run as root or with sudo.
#   redis-server  queues and state (the embedded default starts it when none runs)
#   util-linux    setpriv: a job is told to stop when its worker dies
#   ffmpeg        media muxing; tests make Opus RTP with it
#   chromium      browser tests of the call page (driven by puppeteer-core)
#   espeak-ng     speech for tests' fake microphones
#   openssl       a self-signed certificate for the TLS test
#   pocketsphinx  offline speech recognition (with its English model) for transcriptions and captions;
#                 pocketsphinx-testdata holds real recorded utterances the tests and bench speak;
#                 libpocketsphinx-dev, gcc, pkg-config build the resident recogniser (npm run build)
#   time          GNU time: CPU and memory of a job and its children in bench/recorder
#   docker.io     the Docker runner's engine (scripts/ensure-docker.sh starts it for the tests);
#   busybox-static  the image the Docker runner's tests build from local files
#   debootstrap   the Debian base of the job image where no registry is reachable
#                 (docker/build-job-image.sh --local-base, npm run test:job-image)
#   iptables, libnetfilter-queue-dev  the media-path fault tests: packets of a test call dropped,
#                 delayed and reordered by test/fixtures/netem/netem.c (the kernel has no netem qdisc)
#   iproute2      ss: the SFU's test reads its media sockets' receive buffers from the kernel
#   patch         werift as released beside the patched one (test/werift-released.ts: a test and
#                 the benches compare the two)
set -euo pipefail
packages=(redis-server util-linux ffmpeg chromium espeak-ng fonts-dejavu-core openssl time
  pocketsphinx pocketsphinx-en-us pocketsphinx-testdata libpocketsphinx-dev gcc libc6-dev pkg-config
  docker.io busybox-static debootstrap iptables libnetfilter-queue-dev iproute2 patch)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "system packages ready: ${packages[*]}"
