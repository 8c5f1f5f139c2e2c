#!/bin/sh
# The job image's entry point: the runner sets JOB_TYPE (src/jobs/contract.ts); arguments pass
# through (`--recover`).
case "$JOB_TYPE" in
  recording) exec node /app/dist/workers/recorder/main.js "$@" ;;
  transcribing|captioning) exec node /app/dist/workers/transcriber/main.js "$@" ;;
  *) echo "invalid input: JOB_TYPE must be recording, transcribing or captioning, got '$JOB_TYPE'" >&2; exit 2 ;;
esac
