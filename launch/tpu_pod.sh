#!/usr/bin/env bash
# Pre-training on every host of a Cloud TPU VM (single host or pod slice), from your workstation.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [OPTIONS] [setup] [train] [stop] [-- PRETRAIN_ARGS...]

Runs each step on every worker of the TPU VM at once (gcloud ... ssh --worker=all):
  setup  clone the repository (or fast-forward it) and `pip install -e ".[tpu]"` into a venv
  train  img2imu pretrain --config CONFIG --workdir WORKDIR --distributed PRETRAIN_ARGS...
  stop   send SIGTERM to a running pre-training (it saves a checkpoint and exits 0)
Default: setup train. Arguments the script does not know (e.g. --config.batch_size=4096) go
to pretrain as they are.

Options (environment variable in brackets):
  --tpu NAME        TPU VM name (TPU_NAME, required)
  --zone ZONE       its zone (ZONE, required)
  --project ID      Google Cloud project (PROJECT, default: gcloud's)
  --repo URL        repository the workers clone (REPO_URL, default: this checkout's origin)
  --branch NAME     branch to check out (BRANCH, default: main)
  --dir DIR         checkout on each worker, relative to home (REMOTE_DIR, default: img2imu-jax)
  --python PYTHON   interpreter for the venv, >= 3.11 (PYTHON, default: python3)
  --config FILE     recipe: a bundled name or a file in the checkout (CONFIG, default: img2imu_paper)
  --workdir DIR     checkpoints and metrics (WORKDIR, required for train): a gs:// path or a
                    file system every worker mounts; a local path gives each worker its own
  --detach          train in the background (nohup, log in ~/img2imu-pretrain.log on each
                    worker), so closing this terminal does not stop it (DETACH=1)
  --dry-run         print the commands instead of running them (DRY_RUN=1)
  -h, --help        this text
EOF
}

die() { echo "tpu_pod.sh: $*" >&2; exit 2; }
# Quotes one word for a shell only when it needs it, so printed commands stay readable.
safe='^[A-Za-z0-9_./:=@%+,-]+$'
q() { if [[ $1 =~ $safe ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi; }
run() {
  if [[ $DRY_RUN == 1 ]]; then printf '+'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; echo
  else "$@"; fi
}

TPU_NAME=${TPU_NAME:-} ZONE=${ZONE:-} PROJECT=${PROJECT:-} BRANCH=${BRANCH:-main}
REPO_URL=${REPO_URL:-$(git -C "$(dirname "$0")" remote get-url origin 2>/dev/null || true)}
REMOTE_DIR=${REMOTE_DIR:-img2imu-jax} PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-img2imu_paper} WORKDIR=${WORKDIR:-}
DETACH=${DETACH:-0} DRY_RUN=${DRY_RUN:-0}
steps=() extra=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --tpu) TPU_NAME=${2:?--tpu needs a value}; shift ;;
    --zone) ZONE=${2:?--zone needs a value}; shift ;;
    --project) PROJECT=${2:?--project needs a value}; shift ;;
    --repo) REPO_URL=${2:?--repo needs a value}; shift ;;
    --branch) BRANCH=${2:?--branch needs a value}; shift ;;
    --dir) REMOTE_DIR=${2:?--dir needs a value}; shift ;;
    --python) PYTHON=${2:?--python needs a value}; shift ;;
    --config) CONFIG=${2:?--config needs a value}; shift ;;
    --workdir) WORKDIR=${2:?--workdir needs a value}; shift ;;
    --detach) DETACH=1 ;;
    --dry-run) DRY_RUN=1 ;;
    setup | train | stop) steps+=("$1") ;;
    all) steps+=(setup train) ;;
    --) shift; extra+=("$@"); break ;;
    *) extra+=("$1") ;;
  esac
  shift
done
((${#steps[@]})) || steps=(setup train)

[[ -n $TPU_NAME ]] || die "no TPU name: set TPU_NAME or pass --tpu NAME (see --help)"
[[ -n $ZONE ]] || die "no zone: set ZONE or pass --zone ZONE (see --help)"
if [[ " ${steps[*]} " == *" setup "* && -z $REPO_URL ]]; then
  die "no repository: set REPO_URL or pass --repo URL (see --help)"
fi
if [[ " ${steps[*]} " == *" train "* ]]; then
  [[ -n $WORKDIR ]] || die "no workdir: set WORKDIR or pass --workdir gs://BUCKET/RUN (see --help)"
  [[ $WORKDIR == gs://* ]] || echo "tpu_pod.sh: note: every worker must see $WORKDIR" \
    "(all hosts write checkpoints); use gs:// or a shared file system" >&2
fi
ssh=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE")
if [[ -n $PROJECT ]]; then ssh+=(--project "$PROJECT"); fi
ssh+=(--worker=all --command)

dir=$(q "$REMOTE_DIR") branch=$(q "$BRANCH")
for step in "${steps[@]}"; do
  case $step in
    setup)
      py=$(q "$PYTHON")
      remote=("set -e"
        "if [ -d $dir/.git ]; then git -C $dir fetch -q origin $branch"
        "git -C $dir checkout -q $branch; git -C $dir merge -q --ff-only origin/$branch"
        "else git clone -q --branch $branch $(q "$REPO_URL") $dir; fi; cd $dir"
        "$py -c \"import sys; sys.exit(sys.version_info < (3, 11) and 'need Python >= 3.11')\""
        "[ -x .venv/bin/python ] || $py -m venv .venv; .venv/bin/pip install -q -U pip"
        ".venv/bin/pip install -q -e \".[tpu]\"")
      printf -v joined '%s; ' "${remote[@]}"
      run "${ssh[@]}" "${joined%; }" ;;
    train)
      cmd=".venv/bin/img2imu pretrain --config $(q "$CONFIG") --workdir $(q "$WORKDIR")"
      cmd+=" --distributed"
      for a in "${extra[@]}"; do cmd+=" $(q "$a")"; done
      if [[ $DETACH == 1 ]]; then cmd="nohup $cmd > ~/img2imu-pretrain.log 2>&1 < /dev/null &"; fi
      run "${ssh[@]}" "cd $dir && $cmd" ;;
    stop)
      run "${ssh[@]}" "pkill -TERM -f \"[i]mg2imu pretrain\" || true" ;;
  esac
done
