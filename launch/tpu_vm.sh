#!/usr/bin/env bash
# Cloud TPU VMs and pod slices: create or reuse, install on every worker, train, follow logs, stop, delete.
#
#   launch/tpu_vm.sh COMMAND --name NAME --zone ZONE [flags] [--config FILE] [--workdir gs://...]
#                    [--config.a.b=value ...] [-- more pegasus-jax train args]
#   COMMAND: create | setup | train | logs | stop | delete | up (= create, setup, train)
#
#   launch/tpu_vm.sh up --name pegasus --zone us-east5-a --accelerator-type v5p-256 --spot \
#       --config configs/pegasus_80b.py --workdir gs://my-bucket/runs/80b \
#       --config.data.path='gs://my-bucket/records/*.array_record'
#
# Flags (defaults from the environment where named):
#   --name ($TPU_NAME) --zone ($TPU_ZONE) --project ($TPU_PROJECT, else gcloud's default)
#   --accelerator-type ($TPU_TYPE, v5p-8) --runtime-version ($TPU_RUNTIME, v2-alpha-tpuv5)
#   --spot | --preemptible     capacity type for create
#   --repo URL --ref REF       what `setup` clones on the workers (default: this checkout's origin, HEAD's branch)
#   --no-follow                `train` returns after starting instead of following the logs
#   --dry-run                  print every gcloud command, shell-quoted, instead of running it
# One TPU VM name is one slice: this script does not create multi-slice jobs (several slices joined
# over DCN); use launch/xpk.sh --num-slices N (or Cloud TPU queued resources) for those.
# `train` starts the same command on all workers in the background (it survives ssh disconnects);
# `stop` sends it SIGTERM, which saves a checkpoint and exits 0; `train` again resumes from it.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "tpu_vm.sh: $*" >&2; exit 2; }

[[ $# -ge 1 ]] || usage
command=$1
shift
case $command in create | setup | train | logs | stop | delete | up) ;; -h | --help) usage ;; *) die "unknown command '$command'" ;; esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
name=${TPU_NAME:-}
zone=${TPU_ZONE:-}
project=${TPU_PROJECT:-}
accelerator=${TPU_TYPE:-v5p-8}
runtime=${TPU_RUNTIME:-v2-alpha-tpuv5}
capacity=()
repo=$(git -C "$root" remote get-url origin 2>/dev/null || true)
ref=$(git -C "$root" rev-parse --abbrev-ref HEAD 2>/dev/null || echo main)
follow=1
dry_run=0
config=
workdir=
train_args=()

need() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --name) need "$@"; name=$2; shift 2 ;;
    --zone) need "$@"; zone=$2; shift 2 ;;
    --project) need "$@"; project=$2; shift 2 ;;
    --accelerator-type) need "$@"; accelerator=$2; shift 2 ;;
    --runtime-version) need "$@"; runtime=$2; shift 2 ;;
    --spot) capacity=(--spot); shift ;;
    --preemptible) capacity=(--preemptible); shift ;;
    --repo) need "$@"; repo=$2; shift 2 ;;
    --ref) need "$@"; ref=$2; shift 2 ;;
    --no-follow) follow=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    --config) need "$@"; config=$2; shift 2 ;;
    --workdir) need "$@"; workdir=$2; shift 2 ;;
    --config.*) train_args+=("$1"); shift ;;
    --) shift; train_args+=("$@"); break ;;
    *) die "unknown flag '$1'" ;;
  esac
done
[[ -n $name ]] || die "--name (or TPU_NAME) is required"
[[ -n $zone ]] || die "--zone (or TPU_ZONE) is required"

where=(--zone "$zone")
[[ -n $project ]] && where+=(--project "$project")

run() {
  if ((dry_run)); then
    printf '%q' "$1"
    printf ' %q' "${@:2}"
    printf '\n'
  else
    "$@"
  fi
}

# Quote a command for the workers' shell.
remote() { printf '%q ' "$@"; }

on_all_workers() { run gcloud compute tpus tpu-vm ssh "$name" "${where[@]}" --worker=all --command="$1"; }

do_create() {
  if ((dry_run)); then
    echo "# reuse the TPU VM if describe succeeds, else create it:"
    run gcloud compute tpus tpu-vm describe "$name" "${where[@]}"
  elif gcloud compute tpus tpu-vm describe "$name" "${where[@]}" > /dev/null 2>&1; then
    echo "tpu_vm.sh: reusing $name" >&2
    return
  fi
  run gcloud compute tpus tpu-vm create "$name" "${where[@]}" --accelerator-type="$accelerator" \
    --version="$runtime" "${capacity[@]}"
}

do_setup() {
  [[ -n $repo ]] || die "--repo is required (this checkout has no origin remote)"
  on_all_workers "set -e; [ -d pegasus-jax ] || git clone -q $(remote "$repo") pegasus-jax; git -C pegasus-jax fetch -q origin $(remote "$ref"); git -C pegasus-jax checkout -q FETCH_HEAD; python3 -m pip install -q -e 'pegasus-jax[tpu]'"
}

do_train() {
  [[ -n $config ]] || die "--config is required for train"
  [[ -n $workdir ]] || die "--workdir (gs://...) is required for train"
  local cmd
  cmd=$(remote python3 -m pegasus_jax.cli.main train --config "$config" --workdir "$workdir" "${train_args[@]}")
  # PEGASUS_DISTRIBUTED=1: every worker joins one JAX job (jax.distributed.initialize() auto-detects the slice).
  on_all_workers "cd pegasus-jax && PEGASUS_DISTRIBUTED=1 nohup $cmd > ~/pegasus-train.log 2>&1 < /dev/null & echo \$! > ~/pegasus-train.pid"
  if ((follow)); then do_logs; fi
}

do_logs() { on_all_workers "tail -n +1 -F ~/pegasus-train.log"; }

do_stop() { on_all_workers "kill -TERM \$(cat ~/pegasus-train.pid) 2>/dev/null || true"; }

do_delete() { run gcloud compute tpus tpu-vm delete "$name" "${where[@]}" --quiet; }

case $command in
  create) do_create ;;
  setup) do_setup ;;
  train) do_train ;;
  logs) do_logs ;;
  stop) do_stop ;;
  delete) do_delete ;;
  up) do_create; do_setup; do_train ;;
esac
