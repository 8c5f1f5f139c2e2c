#!/usr/bin/env bash
# Makes sure a Redis answers on 127.0.0.1:6379 (nothing kept on disk); starts one if not.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "redis: already answering on 127.0.0.1:6379"
  exit 0
fi
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 1 50); do
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then echo "redis: started on 127.0.0.1:6379"; exit 0; fi
  sleep 0.1
done
echo "redis: did not start on 127.0.0.1:6379" >&2
exit 1
