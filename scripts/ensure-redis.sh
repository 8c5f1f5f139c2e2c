#!/usr/bin/env bash
# Makes sure a Redis answers on 127.0.0.1:6379; starts one if not, keeping its data where `serve`
# would keep its own (JOBS_DATADIR/redis, an append-only file): the jobs of `npm start` outlive a
# Redis restart, and `serve` started after a reboot reads them back.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "redis: already answering on 127.0.0.1:6379"
  exit 0
fi
cd "$(dirname "$0")/.."
dir="$(realpath -m "${JOBS_DATADIR:-./data}")/redis"
mkdir -p -m 700 "$dir"
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --dir "$dir" --save "" --appendonly yes
for _ in $(seq 1 50); do
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then echo "redis: started on 127.0.0.1:6379 (data in $dir)"; exit 0; fi
  sleep 0.1
done
echo "redis: did not start on 127.0.0.1:6379" >&2
exit 1
