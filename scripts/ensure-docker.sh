#!/usr/bin/env bash
# Makes sure a Docker engine answers on /var/run/docker.sock (the Docker runner's tests need one).
# Starts Debian's dockerd with its own data root and no iptables or bridge (these machines allow
# neither): containers run with host networking or none, images are built from local files.
set -euo pipefail
if docker version >/dev/null 2>&1; then echo "docker: already answering"; exit 0; fi
if ! command -v dockerd >/dev/null; then echo "docker: dockerd is not installed (Debian's docker.io)" >&2; exit 1; fi
root=/var/lib/calls-offloader-docker
mkdir -p "$root"
nohup dockerd --data-root "$root" --iptables=false --ip6tables=false --bridge=none \
  --host unix:///var/run/docker.sock >/var/log/calls-offloader-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker version >/dev/null 2>&1; then echo "docker: started (data root $root)"; exit 0; fi
  sleep 1
done
echo "docker: dockerd did not answer within 60 s; see /var/log/calls-offloader-dockerd.log" >&2
exit 1
