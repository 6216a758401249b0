#!/usr/bin/env bash
# Run one experiment on every worker of a Cloud TPU VM pod slice.
#
#   launch/tpu_pod.sh TPU_NAME ZONE -- --config=configs/llmrouter_pool.py --workdir=gs-or-nfs/dir
#
# Every worker runs the same command; JAX discovers the pod topology itself on TPU VMs, so
# `jax.distributed.initialize()` needs no arguments there (prefill_router.features.distributed
# calls it when PREFILL_ROUTER_MULTIHOST=1). Each host extracts its slice of the prompts and
# writes its own feature chunks into the feature store under the SHARED cache dir (set
# PREFILL_ROUTER_CACHE to a mounted bucket or NFS path visible to all hosts); process 0 verifies the
# store and runs the single-host stages (probe, train, report) in the workdir.
# Environment: PROJECT (gcloud project, optional), REPO_DIR (checkout path on the workers,
# default ~/prefill_router), PYTHON (default python3), PREFILL_ROUTER_CACHE (forwarded to the workers).
set -euo pipefail
if [[ $# -lt 3 || "$3" != "--" ]]; then
  echo "usage: $0 TPU_NAME ZONE -- <experiments.main flags>" >&2
  exit 2
fi
TPU_NAME=$1 ZONE=$2
shift 3
REPO_DIR=${REPO_DIR:-'~/prefill_router'}
PYTHON=${PYTHON:-python3}
ARGS=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"} --worker=all \
  --command="cd $REPO_DIR && PREFILL_ROUTER_MULTIHOST=1 ${PREFILL_ROUTER_CACHE:+PREFILL_ROUTER_CACHE=$PREFILL_ROUTER_CACHE} $PYTHON -m experiments.main $ARGS"
