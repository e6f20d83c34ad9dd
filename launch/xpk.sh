#!/usr/bin/env bash
# GKE TPU clusters through XPK: one workload = one training run across all the slice's hosts.
#
#   launch/xpk.sh [create|delete] --cluster CLUSTER --workload NAME [flags] [--config FILE]
#                 [--workdir gs://...] [--config.a.b=value ...] [-- more pegasus-jax train args]
#
#   launch/xpk.sh --cluster my-v5p --workload pegasus-80b --tpu-type v5p-256 --num-slices 2 \
#       --docker-image gcr.io/my-project/pegasus-jax:latest \
#       --config configs/pegasus_80b.py --workdir gs://my-bucket/runs/80b
#
# Flags (defaults from the environment where named):
#   --cluster ($XPK_CLUSTER) --workload ($XPK_WORKLOAD) --project ($XPK_PROJECT) --zone ($XPK_ZONE)
#   --tpu-type ($XPK_TPU_TYPE, v5p-8) --num-slices ($XPK_NUM_SLICES, 1)
#   --docker-image ($XPK_DOCKER_IMAGE): an image with pegasus-jax[tpu] installed
#   --dry-run: print the xpk command, shell-quoted, instead of running it
# The workload's hosts find each other through the MEGASCALE_*/TPU_* environment XPK sets, which
# `jax.distributed.initialize()` reads (pegasus_jax/train/distributed.py).
# Multi-slice (--num-slices N > 1): every device reports its slice_index, so the trainer's mesh
# (pegasus_jax/sharding.py) keeps mesh.data/fsdp/tensor inside each slice (ICI) and spreads only
# mesh.dcn_data (default -1: all N slices, data parallel) and mesh.dcn_fsdp across slices (DCN);
# nothing else needs passing. Check the layout fits first, from any machine:
#   pegasus-jax compile --config FILE --topology TPU_TYPE --num-slices N
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "xpk.sh: $*" >&2; exit 2; }

action=create
case ${1:-} in create | delete) action=$1; shift ;; -h | --help) usage ;; esac

cluster=${XPK_CLUSTER:-}
workload=${XPK_WORKLOAD:-}
project=${XPK_PROJECT:-}
zone=${XPK_ZONE:-}
tpu_type=${XPK_TPU_TYPE:-v5p-8}
num_slices=${XPK_NUM_SLICES:-1}
image=${XPK_DOCKER_IMAGE:-}
dry_run=0
config=
workdir=
train_args=()

need() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --cluster) need "$@"; cluster=$2; shift 2 ;;
    --workload) need "$@"; workload=$2; shift 2 ;;
    --project) need "$@"; project=$2; shift 2 ;;
    --zone) need "$@"; zone=$2; shift 2 ;;
    --tpu-type) need "$@"; tpu_type=$2; shift 2 ;;
    --num-slices) need "$@"; num_slices=$2; shift 2 ;;
    --docker-image) need "$@"; image=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --config) need "$@"; config=$2; shift 2 ;;
    --workdir) need "$@"; workdir=$2; shift 2 ;;
    --config.*) train_args+=("$1"); shift ;;
    --) shift; train_args+=("$@"); break ;;
    *) die "unknown flag '$1'" ;;
  esac
done
[[ -n $cluster ]] || die "--cluster (or XPK_CLUSTER) is required"
[[ -n $workload ]] || die "--workload (or XPK_WORKLOAD) is required"
[[ $num_slices =~ ^[1-9][0-9]*$ ]] || die "--num-slices (or XPK_NUM_SLICES) must be an integer >= 1, got '$num_slices'"

where=()
[[ -n $project ]] && where+=(--project "$project")
[[ -n $zone ]] && where+=(--zone "$zone")

if [[ $action == delete ]]; then
  cmd=(xpk workload delete --cluster "$cluster" --workload "$workload" "${where[@]}")
else
  [[ -n $config ]] || die "--config is required"
  [[ -n $workdir ]] || die "--workdir (gs://...) is required"
  train="PEGASUS_DISTRIBUTED=1 $(printf '%q ' pegasus-jax train --config "$config" --workdir "$workdir" "${train_args[@]}")"
  cmd=(xpk workload create --cluster "$cluster" --workload "$workload" --tpu-type "$tpu_type"
    --num-slices "$num_slices" "${where[@]}")
  [[ -n $image ]] && cmd+=(--docker-image "$image")
  cmd+=(--command "$train")
fi

if ((dry_run)); then
  printf '%q' "${cmd[0]}"
  printf ' %q' "${cmd[@]:1}"
  printf '\n'
else
  exec "${cmd[@]}"
fi
