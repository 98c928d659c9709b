#!/usr/bin/env bash
# Run one dmixed job from cron, never two at once.
#
#   dmixed-cron.sh [fit|update] JOB.yaml [extra dmixed flags ...]
#
# - The command is `dmixed fit` unless `update` comes first: a job over a growing
#   glob with stats_dir runs `dmixed fit --job JOB.yaml` once, then `update` every
#   night, with `skip_included: true` in the job file (yesterday's files, already in
#   the statistics, are left out; a night without new files writes nothing, exit 0).
# - Takes an exclusive, non-blocking flock on $DMIXED_LOCK_DIR/<job name>.lock: if the
#   previous run of the same job is still going, this run logs that and exits 0
#   (the lock is released by the kernel when that run ends, even if it is killed).
# - Runs from the job file's directory, so relative paths in the job file (data,
#   output, stats_dir) do not depend on cron's working directory ($HOME).
# - Exits with dmixed's status: 0 ok, 1 a bug in dmixed, 2 bad configuration,
#   3 unreadable data, 4 not converged, 5 cluster unreachable (`dmixed --help`).
#
# Environment: DMIXED_BIN (default: dmixed on PATH; cron's PATH is minimal, so set
# PATH in the crontab or give an absolute path), DMIXED_LOCK_DIR (default
# ${XDG_RUNTIME_DIR:-/tmp}/dmixed-locks).

set -euo pipefail

command=fit
if [[ ${1:-} == fit || ${1:-} == update ]]; then
    command=$1
    shift
fi
if [[ $# -lt 1 ]]; then
    echo "usage: $(basename "$0") [fit|update] JOB.yaml [dmixed flags ...]" >&2
    exit 2
fi
job=$1
shift
if [[ ! -r $job ]]; then
    echo "$(date -u +%FT%TZ) dmixed-cron: cannot read job file $job" >&2
    exit 2
fi

name=$(basename "$job")
name=${name%.*}
lock_dir=${DMIXED_LOCK_DIR:-${XDG_RUNTIME_DIR:-/tmp}/dmixed-locks}
mkdir -p "$lock_dir"
lock=$lock_dir/$name.lock

# fd 9 stays open in dmixed (exec below), so the lock lives exactly as long as the run
exec 9>>"$lock"
if ! flock --nonblock 9; then
    echo "$(date -u +%FT%TZ) dmixed-cron: $name: previous run still running; skipping" >&2
    exit 0
fi

cd "$(dirname "$job")"
echo "$(date -u +%FT%TZ) dmixed-cron: $name: starting $command (pid $$)" >&2
# DMIXED_BIN unquoted on purpose: it may be a command with arguments ("python -m dmixed")
# shellcheck disable=SC2086
exec ${DMIXED_BIN:-dmixed} "$command" --job "$(basename "$job")" "$@"
