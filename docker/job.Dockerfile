# The job image: both job programs (recorder, transcriber) with what they run: Node, ffmpeg, a font,
# pocketsphinx and its English model; whisper.cpp models baked in with WHISPER_MODELS. Non-root.
# The Docker and Kubernetes runners start it with the contract's environment (src/jobs/contract.ts);
# JOB_TYPE chooses the program. Build it with docker/build-job-image.sh, which stages the compiled
# programs and their production node_modules in .job-image/ first.
#   BASE: an image with Node 20 on Debian 12 (default node:20-bookworm-slim); where no registry is
#   reachable, build-job-image.sh --local-base makes one with debootstrap and this host's node.
ARG BASE=node:20-bookworm-slim
FROM ${BASE}
# ffmpeg's libraries pull in Mesa's GPU drivers and the LLVM they compile shaders with (about 160 MB):
# nothing links them, libGL only loads a driver when asked for a GPU, and the jobs encode on the CPU.
# They are purged with --force-depends, so apt reports them missing in an image built from this one.
# The ffmpeg run after the purge checks that what the jobs use still loads: zimg (the recorder's fit), x264.
# `apt-get clean`: a base made by debootstrap keeps every downloaded package (about 230 MB).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg fonts-dejavu-core libpocketsphinx3 pocketsphinx-en-us \
    && dpkg --purge --force-depends libgl1-mesa-dri libllvm15 libz3-4 \
    && ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=s=64x64:d=0.2 -vf zscale=w=96:h=96:filter=bilinear -c:v libx264 -f null - \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
    && (getent group 10001 || groupadd -g 10001 calls) \
    && (getent passwd 10001 || useradd -u 10001 -g 10001 -M -d /nonexistent -s /usr/sbin/nologin calls)
WORKDIR /app
COPY .job-image/app /app
ENV NODE_ENV=production LIBPOCKETSPHINX_MODEL_DIR=/usr/share/pocketsphinx/model WHISPER_MODEL_DIR=/app/models
USER 10001:10001
ENTRYPOINT ["/app/job-entrypoint.sh"]
