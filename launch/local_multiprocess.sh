#!/usr/bin/env bash
# Several pre-training processes on one machine, joined by an explicit coordinator: the
# multi-host code path (one process per host) without a cluster, on CPU by default.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/local_multiprocess.sh [OPTIONS] [PRETRAIN_ARGS...]

Starts N processes, process i running
  img2imu pretrain --config CONFIG --workdir WORKDIR --coordinator localhost:PORT \
      --num-processes N --process-id i PRETRAIN_ARGS...
with JAX_PLATFORMS=cpu and K fake CPU devices each (N x K devices in the mesh). Their output
goes to the terminal prefixed [i] and to LOG_DIR/process_<i>.log. Waits for all of them; when
one fails, stops the others and exits with its status. Arguments the script does not know
(e.g. --config.batch_size=64) go to pretrain as they are.

Options (environment variable in brackets):
  -n, --num-processes N    processes (NUM_PROCESSES, default 2)
  -k, --devices K          CPU devices per process (DEVICES_PER_PROCESS, default 2)
  --port PORT              coordinator port on localhost (PORT, default 12355)
  --config FILE            recipe name or file (CONFIG, default demo)
  --workdir DIR            checkpoints and metrics (WORKDIR, default runs/local_multiprocess)
  --log-dir DIR            per-process logs (LOG_DIR, default WORKDIR/logs)
  --dry-run                print the commands instead of running them (DRY_RUN=1)
  -h, --help               this text
JAX_PLATFORMS (default cpu) and XLA_FLAGS from the environment are kept; IMG2IMU picks the
executable (default: the checkout's .venv/bin/img2imu, else img2imu on PATH). Needs bash >= 5.1.
EOF
}

die() { echo "local_multiprocess.sh: $*" >&2; exit 2; }
safe='^[A-Za-z0-9_./:=@%+,-]+$'
q() { if [[ $1 =~ $safe ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi; }
show() { printf '+'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; echo; }

repo=$(cd "$(dirname "$0")/.." && pwd)
NUM_PROCESSES=${NUM_PROCESSES:-2} DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-2}
PORT=${PORT:-12355} CONFIG=${CONFIG:-demo}
WORKDIR=${WORKDIR:-runs/local_multiprocess} LOG_DIR=${LOG_DIR:-} DRY_RUN=${DRY_RUN:-0}
if [[ -z ${IMG2IMU:-} ]]; then
  IMG2IMU=img2imu
  if [[ -x $repo/.venv/bin/img2imu ]]; then IMG2IMU=$repo/.venv/bin/img2imu; fi
fi
extra=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --num-processes) NUM_PROCESSES=${2:?$1 needs a value}; shift ;;
    -k | --devices) DEVICES_PER_PROCESS=${2:?$1 needs a value}; shift ;;
    --port) PORT=${2:?--port needs a value}; shift ;;
    --config) CONFIG=${2:?--config needs a value}; shift ;;
    --workdir) WORKDIR=${2:?--workdir needs a value}; shift ;;
    --log-dir) LOG_DIR=${2:?--log-dir needs a value}; shift ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; extra+=("$@"); break ;;
    *) extra+=("$1") ;;
  esac
  shift
done
for v in NUM_PROCESSES DEVICES_PER_PROCESS PORT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}' (see --help)"
done
LOG_DIR=${LOG_DIR:-$WORKDIR/logs}
environment=(env "JAX_PLATFORMS=${JAX_PLATFORMS-cpu}"
  "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$DEVICES_PER_PROCESS")

command_for() {  # process $1's command line
  cmd=("${environment[@]}" "$IMG2IMU" pretrain --config "$CONFIG" --workdir "$WORKDIR"
    --coordinator "localhost:$PORT" --num-processes "$NUM_PROCESSES" --process-id "$1"
    "${extra[@]}")
}
if [[ $DRY_RUN == 1 ]]; then
  show mkdir -p "$LOG_DIR"
  for ((i = 0; i < NUM_PROCESSES; i++)); do command_for "$i"; show "${cmd[@]}"; done
  exit 0
fi

((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 501)) || die "needs bash >= 5.1 (wait -n -p)"
mkdir -p "$LOG_DIR"
pids=() index=()
stop() {  # SIGTERM (the trainer saves and exits), then SIGKILL whatever is still there after 20 s
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in {1..100}; do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  pids=()
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for ((i = 0; i < NUM_PROCESSES; i++)); do
  command_for "$i"
  # $! is the trainer itself; the process substitution only copies its output.
  "${cmd[@]}" > >(tee -a "$LOG_DIR/process_$i.log" | sed -u "s/^/[$i] /") 2>&1 &
  pids+=($!) index[$!]=$i
done
echo "started $NUM_PROCESSES processes (pids ${pids[*]}); logs in $LOG_DIR" >&2
while ((${#pids[@]})); do
  status=0 finished=
  wait -n -p finished "${pids[@]}" || status=$?
  remaining=()
  for pid in "${pids[@]}"; do [[ $pid == "$finished" ]] || remaining+=("$pid"); done
  pids=("${remaining[@]}")
  if ((status)); then  # the EXIT trap stops the others
    echo "local_multiprocess.sh: process ${index[$finished]:-?} failed (status $status);" \
      "stopping the others" >&2
    exit "$status"
  fi
done
echo "all $NUM_PROCESSES processes finished" >&2
