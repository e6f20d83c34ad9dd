#!/usr/bin/env bash
# Rehearse a multi-host job on this machine: N CPU processes forming one JAX multi-controller job
# (gloo collectives), each running `pegasus-jax train ARGS...`.
#
#   launch/local.sh N [--dry-run] [pegasus-jax train args...]
#   launch/local.sh 2 --config configs/tiny.py --workdir runs/local2 --config.train.steps=20
#
# Each process gets PEGASUS_COORDINATOR=127.0.0.1:PORT (a free port), PEGASUS_NUM_PROCESSES=N and
# PEGASUS_PROCESS_ID=rank (read by pegasus_jax/train/distributed.py). Output lines are prefixed with
# "[rank]". The first non-zero exit code is returned and the other processes are then stopped.
# Binary: $PEGASUS_BIN, else .venv/bin/pegasus-jax, else pegasus-jax on PATH.
set -euo pipefail

usage() { echo "usage: launch/local.sh N [--dry-run] [pegasus-jax train args...]" >&2; exit 2; }
[[ $# -ge 1 && $1 =~ ^[1-9][0-9]*$ ]] || usage
num=$1
shift
dry_run=0
if [[ ${1:-} == --dry-run ]]; then
  dry_run=1
  shift
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${PEGASUS_BIN:-} ]]; then
  bin=$PEGASUS_BIN
elif [[ -x $root/.venv/bin/pegasus-jax ]]; then
  bin=$root/.venv/bin/pegasus-jax
else
  bin=pegasus-jax
fi

# A port the kernel hands out is free now; the coordinator binds it moments later.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

if ((dry_run)); then
  for ((rank = 0; rank < num; rank++)); do
    printf 'PEGASUS_COORDINATOR=127.0.0.1:%s PEGASUS_NUM_PROCESSES=%s PEGASUS_PROCESS_ID=%s JAX_PLATFORMS=cpu' \
      "$port" "$num" "$rank"
    printf ' %q' "$bin" train "$@"
    printf '\n'
  done
  exit 0
fi

# Job control puts each rank in its own process group, so stopping a rank also stops whatever it
# started (data workers, the log prefixer) instead of leaving orphans holding its output open.
set -m
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
}
trap 'cleanup; exit 130' INT TERM

for ((rank = 0; rank < num; rank++)); do
  (
    # One process per "host": the simulated-device flag would multiply devices per process.
    export PEGASUS_COORDINATOR=127.0.0.1:$port PEGASUS_NUM_PROCESSES=$num PEGASUS_PROCESS_ID=$rank
    export JAX_PLATFORMS=cpu XLA_FLAGS=${LOCAL_XLA_FLAGS:-}
    exec "$bin" train "$@" > >(sed -u "s/^/[$rank] /") 2>&1
  ) &
  pids+=("$!")
done

status=0
remaining=$num
while ((remaining > 0)); do
  code=0
  wait -n -p finished || code=$?
  for i in "${!pids[@]}"; do [[ ${pids[$i]} == "$finished" ]] && unset 'pids[i]'; done
  remaining=$((remaining - 1))
  if ((code != 0 && status == 0)); then
    status=$code
    echo "local.sh: a process exited with code $code; stopping the others" >&2
    cleanup
  fi
done
exit "$status"
