#!/usr/bin/env bash
# compute tmux launcher, format 1. Task 'ray sweep': 2 jobs, one job per lane.
# `bash launcher.sh start [INDEX...]` starts a tmux session named after this file's directory with one
# window ("lane") per job that may run at once; each lane runs, one after another, the next jobs of the
# queue that no other lane has claimed. Job INDEX leaves its files next to this script: INDEX.log
# (stdout+stderr), INDEX.started, INDEX.pid (its process group), INDEX.status (exit code, on exit).
compute_dir=$(cd "$(dirname "$0")" && pwd) || exit 1
cd "$compute_dir" || exit 1
compute_max_lanes=0  # 0: one lane per job
compute_gpus=()  # lane K gives its jobs CUDA_VISIBLE_DEVICES=${compute_gpus[K]}
compute_gpu=

compute_prelude() {
:
}

# The Ray cluster of one Slurm job (`ray: true`), rendered into its sbatch script.
#
# A head on the job's first node (where this script runs) and a worker on each other node (of every
# component of a heterogeneous job), each one
# `srun --overlap` step of this job running `ray start --block`, so that the end of the job, scancel
# and the time limit stop them with it; each on its node's own address, with a temp dir of this job
# and node, and ports chosen here, free on the node: two Ray jobs sharing a node never meet (Ray's
# fixed defaults, 6379 and 52365, would make them). The command starts once every node has joined,
# within COMPUTE_RAY_WAIT seconds (300), with RAY_ADDRESS exported; its seeds run in turn on the same
# cluster. At the end the steps are stopped: `ray stop` would stop every Ray of the user on the node,
# another job's too. What the cluster says goes to stderr: the job's output starts with `CMD`.

compute_ray_wait=${COMPUTE_RAY_WAIT:-300}
compute_ray_steps=()

# The Python `ray` runs with (its console script's interpreter), for the port probe and the wait.
compute_ray_python() {
  local ray bin p first
  ray=$(command -v ray) bin=$(dirname "$ray")
  for p in "$bin/python" "$bin/python3"; do  # a venv's or conda's, beside it
    [ -x "$p" ] && { printf '%s\n' "$p"; return; }
  done
  first=$(head -n 1 "$ray" 2>/dev/null)
  first=${first#\#!} first=${first%% *}
  case $first in
    /*python*) printf '%s\n' "$first" ;;  # pip install --user: the system's
    *) printf '%s\n' python3 ;;
  esac
}

# Prints this node's own address: the first that is not loopback.
# shellcheck disable=SC2016
export COMPUTE_RAY_IP='
for a in $(hostname -I 2>/dev/null) $(getent ahostsv4 "$(hostname)" 2>/dev/null | cut -d" " -f1); do
  case $a in 127.*) ;; *) echo "$a"; exit 0 ;; esac
done
hostname --ip-address | cut -d" " -f1
'

# What each node runs, in its step: `ray start` on its own address, blocking until the step ends.
# $1: head or worker, $2: its GPUs; the head's address and the port come from the environment.
# shellcheck disable=SC2016
compute_ray_node='
ip=$(bash -c "$COMPUTE_RAY_IP")
probe="import socket; s = socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])"
agent=$("$COMPUTE_RAY_PYTHON" -c "$probe") || exit 1
dir="$COMPUTE_RAY_TMP/$(hostname)"
mkdir -p "$dir" || exit 1
role=$1 ngpus=${2:-0}
set -- --node-ip-address="$ip" --temp-dir="$dir" --dashboard-agent-listen-port="$agent" \
  --num-cpus="${SLURM_CPUS_ON_NODE:-${SLURM_CPUS_PER_TASK:-$(nproc)}}" --disable-usage-stats --block
# the memory Slurm gives the node: 70% for tasks, 30% for the object store (not for a heterogeneous job:
# SLURM_MEM_PER_NODE is that of the first component)
if [ -n "${SLURM_MEM_PER_NODE:-}" ] && [ -z "${SLURM_HET_SIZE:-}" ]; then
  set -- "$@" --memory=$((SLURM_MEM_PER_NODE * 734003)) --object-store-memory=$((SLURM_MEM_PER_NODE * 314572))
fi
# the GPUs of this node ($2), said to Ray (which looks for them through the driver); without any, a
# CUDA_VISIBLE_DEVICES here came from the batch environment, that is from another node
if [ "$ngpus" -gt 0 ]; then
  set -- "$@" --num-gpus="$ngpus"
else
  unset CUDA_VISIBLE_DEVICES
  set -- "$@" --num-gpus=0
fi
if [ "$role" = head ]; then
  echo "compute: Ray head on $(hostname) at $ip:$COMPUTE_RAY_PORT" >&2
  exec ray start --head --port="$COMPUTE_RAY_PORT" --include-dashboard=false "$@" >&2
fi
echo "compute: Ray worker on $(hostname) at $ip" >&2
exec ray start --address="$COMPUTE_RAY_HEAD" "$@" >&2
'

# Waits until $1 nodes are alive in the cluster at RAY_ADDRESS, at most $2 seconds.
# shellcheck disable=SC2016
compute_ray_joined='
import os, sys, time
want, wait = int(sys.argv[1]), float(sys.argv[2])
address, deadline = os.environ["RAY_ADDRESS"], time.monotonic() + wait
import ray
while True:
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        break
    except Exception as e:
        if time.monotonic() > deadline:
            sys.exit(f"compute: the Ray head at {address} did not answer within {wait:g} s: {e}")
        time.sleep(0.5)
while True:
    alive = sum(1 for node in ray.nodes() if node["Alive"])
    if alive >= want:
        print(f"compute: Ray cluster of {alive} node(s) at {address}", file=sys.stderr, flush=True)
        break
    if time.monotonic() > deadline:
        sys.exit(f"compute: {alive} of {want} Ray nodes joined within {wait:g} s")
    time.sleep(0.5)
ray.shutdown()
'

# The job's nodes (`nodes`), for a heterogeneous job the srun option of each one's component (`steps`),
# and the GPUs each one's step asks for (`gpus`: from compute_ray_gpus, one count per component, which
# the script sets; a step gets no GPU unless it asks, and Ray counts the GPUs its step sees).
compute_ray_nodes() {
  local g node list
  nodes=() steps=() gpus=()
  if [ -z "${SLURM_HET_SIZE:-}" ]; then
    mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    for node in "${nodes[@]}"; do
      steps+=("") gpus+=("${compute_ray_gpus[0]:-0}")
    done
    return
  fi
  for ((g = 0; g < SLURM_HET_SIZE; g++)); do
    list="SLURM_JOB_NODELIST_HET_GROUP_$g"
    for node in $(scontrol show hostnames "${!list}"); do
      nodes+=("$node") steps+=("--het-group=$g") gpus+=("${compute_ray_gpus[$g]:-0}")
    done
  done
}

# The srun options of node $1's step.
compute_ray_step() {
  printf '%s\n' --overlap --nodes=1 --ntasks=1 -w "${nodes[$1]}"
  [ -n "${steps[$1]}" ] && printf '%s\n' "${steps[$1]}"
  [ "${gpus[$1]}" -gt 0 ] && printf '%s\n' "--gres=gpu:${gpus[$1]}"
  return 0
}

# The settings every node reads: the Python, the temp dir (of job $1), the head's port and address.
compute_ray_settings() {
  command -v ray >/dev/null || { echo "compute: ray: command not found (PATH=$PATH): install Ray, or activate its environment in the host's init" >&2; return 127; }
  COMPUTE_RAY_PYTHON=$(compute_ray_python)
  COMPUTE_RAY_TMP="${TMPDIR:-/tmp}/compute-ray-$1"
  COMPUTE_RAY_PORT=$("$COMPUTE_RAY_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])') || return 1
  COMPUTE_RAY_HEAD=$(bash -c "$COMPUTE_RAY_IP"):$COMPUTE_RAY_PORT
  export COMPUTE_RAY_PYTHON COMPUTE_RAY_TMP COMPUTE_RAY_PORT COMPUTE_RAY_HEAD
  export RAY_ADDRESS=$COMPUTE_RAY_HEAD RAY_USAGE_STATS_ENABLED=0
}

# A tmux job's Ray: a head alone, on this machine, in the job's own process group ($1 names the job).
compute_ray_local() {
  compute_ray_settings "$1" || return
  local gpus=0  # the lane's GPU (`gpus:`), if it has one
  [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && gpus=$(printf '%s\n' "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
  bash -c "$compute_ray_node" compute-ray head "$gpus" &
  compute_ray_steps+=($!)
  "$COMPUTE_RAY_PYTHON" -c "$compute_ray_joined" 1 "$compute_ray_wait" &
  wait "$!"
}

compute_ray_up() {
  local nodes steps gpus options i
  compute_ray_nodes
  compute_ray_settings "$SLURM_JOB_ID" || return
  for ((i = 0; i < ${#nodes[@]}; i++)); do
    mapfile -t options < <(compute_ray_step "$i")
    srun "${options[@]}" bash -c "$compute_ray_node" compute-ray "$([ "$i" = 0 ] && echo head || echo worker)" "${gpus[$i]}" &
    compute_ray_steps+=($!)
  done
  # in the background: the job's TERM trap must not wait for the wait (`wait` is interrupted at once)
  "$COMPUTE_RAY_PYTHON" -c "$compute_ray_joined" "${#nodes[@]}" "$compute_ray_wait" &
  wait "$!"
}

compute_ray_down() {
  [ ${#compute_ray_steps[@]} -gt 0 ] || return 0
  kill -TERM "${compute_ray_steps[@]}" 2>/dev/null
  wait "${compute_ray_steps[@]}" 2>/dev/null
  compute_ray_steps=()
  rm -rf "$COMPUTE_RAY_TMP" 2>/dev/null
  echo "compute: Ray stopped" >&2
}

job_0() {  # lr=0.1
compute_metrics="$compute_dir/0.metrics"  # COMPUTE_METRICS (JobPaths.metrics)
compute_prelude
trap compute_ray_down EXIT
compute_ray_local "$(basename "$compute_dir")-0" || exit
printf '%s\n' 'CMD python3 tune.py --lr=0.1'
compute_rc=0
seed=0; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".0.jsonl
(
python3 tune.py --lr=0.1
)
rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc
seed=1; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".1.jsonl
(
python3 tune.py --lr=0.1
)
rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc
exit "$compute_rc"
}

job_1() {  # lr=0.01
compute_metrics="$compute_dir/1.metrics"  # COMPUTE_METRICS (JobPaths.metrics)
compute_prelude
trap compute_ray_down EXIT
compute_ray_local "$(basename "$compute_dir")-1" || exit
printf '%s\n' 'CMD python3 tune.py --lr=0.01'
compute_rc=0
seed=0; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".0.jsonl
(
python3 tune.py --lr=0.01
)
rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc
seed=1; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".1.jsonl
(
python3 tune.py --lr=0.01
)
rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc
exit "$compute_rc"
}

# fail_on_log, in a Slurm job and a tmux lane alike: one look at what file $1 got since byte $2.
# Status 0 when it matches one of the patterns (grep -E, in compute_log_args), the CMD line jobs print
# first left out (the command's own words may match). Else prints where the next look starts: after the
# last whole line, so that a line still being written is looked at whole next time (up to 64 KiB of it).
compute_log_look() {
  local size part
  size=$(stat -c %s -- "$1" 2>/dev/null) && [ "$size" -gt "$2" ] || { echo "$2"; return 1; }
  if compute_log_since "$1" "$2" "$size" | grep -v '^CMD ' | grep -E -q "${compute_log_args[@]}"; then
    return 0
  fi
  if [ "$(compute_log_since "$1" "$2" "$size" | tail -c 1 | wc -l)" -eq 0 ]; then
    part=$(compute_log_since "$1" "$2" "$size" | tail -c 65536 | LC_ALL=C awk 'END { printf "%d", length($0) }')
    size=$((size - part))
  fi
  echo "$size"
  return 1
}

compute_log_since() {  # FILE FROM TO: its bytes from FROM to TO
  tail -c +"$(($2 + 1))" -- "$1" | head -c "$(($3 - $2))"
}
compute_start() {
  [ $# -gt 0 ] || set -- 0 1
  local i k lanes me session
  for i in "$@"; do
    declare -F "job_$i" >/dev/null || { echo "compute: this launcher has no job $i" >&2; return 2; }
  done
  printf '%s\n' "$@" > queue || return 1
  lanes=$#
  if [ "$compute_max_lanes" -gt 0 ] && [ "$lanes" -gt "$compute_max_lanes" ]; then
    lanes=$compute_max_lanes
  fi
  # The lanes take the environment from here (the login's, with what its start-up files exported), not
  # from a tmux server the user may have started long ago: a new session gets that server's.
  (umask 077; export -p | grep -vE '^declare -x (OLDPWD|PWD|SHLVL|TMUX|TMUX_PANE|_)=' > environment) || return 1
  session=$(basename "$compute_dir")
  me=$(printf '%q' "$compute_dir/$(basename "$0")")
  # One tmux command creates every window, so no lane can end the session before the others exist.
  local args=(new-session -d -s "$session" -n lane-0 -c "$compute_dir" "bash $me lane 0")
  for ((k = 1; k < lanes; k++)); do
    args+=(';' new-window -d -t "=$session:" -n "lane-$k" -c "$compute_dir" "bash $me lane $k")
  done
  # Two launches at once on a host with no tmux server both start one: the server that loses the socket
  # exits ("server exited unexpectedly") and its session is never made. It is asked again, of the server
  # the other launch started.
  for ((k = 1; ; k++)); do
    tmux "${args[@]}" 2> tmux.err && break
    if [ "$k" -ge 5 ] || tmux has-session -t "=$session" 2>/dev/null; then
      cat tmux.err >&2; rm -f environment tmux.err; return 1
    fi
    sleep 0.2
  done
  rm -f tmux.err
  for ((k = 0; k < 300; k++)); do
    [ "$(ls lane-*.ready 2>/dev/null | wc -l)" -ge "$lanes" ] && break
    sleep 0.1
  done
  rm -f environment lane-*.ready
}

# fail_on_log: every COMPUTE_LOG_EVERY seconds (10), a look at what job $1 wrote since (log-look.sh); the
# first match stops the job (process group $2, SIGKILL 10 s later) and is noted in $1.matched.
compute_log_watch() {
  local compute_log_args=() pattern seen=0 k
  for pattern in "${compute_fail_on_log[@]}"; do compute_log_args+=(-e "$pattern"); done
  while :; do
    sleep "${COMPUTE_LOG_EVERY:-10}" && kill -0 -- "-$2" 2>/dev/null || return 0
    seen=$(compute_log_look "$1.log" "$seen") && break
  done
  : > "$1.matched"
  kill -TERM -- "-$2" 2>/dev/null
  for ((k = 0; k < 10; k++)); do kill -0 -- "-$2" 2>/dev/null || return 0; sleep 1; done
  kill -KILL -- "-$2" 2>/dev/null
}

compute_lane() {
  local i rc again lost pid= stop= watcher=
  if [ -r environment ]; then . ./environment; fi; : > "lane-$1.ready"
  if [ ${#compute_gpus[@]} -gt 0 ]; then compute_gpu=${compute_gpus[$1]}; fi
  # Job control gives every job its own process group, so that cancelling a job stops all it started.
  # A killed session (SIGHUP) passes the signal on to the running job and stops the lane.
  set -m
  trap 'stop=1; [ -z "$pid" ] || kill -TERM -- "-$pid" 2>/dev/null' HUP TERM
  while [ -z "$stop" ] && IFS= read -r i; do
    [ ! -e "$i.cancelled" ] || continue
    # The claim: creating INDEX.started fails (noclobber) when another lane has already taken the job.
    (set -C; date -u '+%Y-%m-%dT%H:%M:%SZ' > "$i.started") 2>/dev/null || continue
    echo "compute: job $i started ${compute_gpu:+on GPU $compute_gpu }at $(date)"
    "job_$i" < /dev/null > "$i.log" 2>&1 &
    pid=$!
    echo "$pid" > "$i.pid"
    if [ ${#compute_fail_on_log[@]} -gt 0 ]; then compute_log_watch "$i" "$pid" < /dev/null & watcher=$!; fi
    # `compute cancel` writes INDEX.cancelled, then kills INDEX.pid if it exists: one of us sees the other.
    [ ! -e "$i.cancelled" ] || kill -TERM -- "-$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    if [ -n "$stop" ]; then  # the first wait was interrupted by the trap: wait for the job's own end
      wait "$pid"
      again=$?
      [ "$again" -eq 127 ] || rc=$again
    fi
    # a watcher that stopped the job sees its whole process group gone (or kills it): waited for
    if [ -e "$i.matched" ]; then wait "$watcher"; elif [ -n "$watcher" ]; then kill -TERM -- "-$watcher" 2>/dev/null; fi
    # a job stopped with its session (killed, the host shutting down) is `lost`: compute watch may retry it
    lost=; [ -z "$stop" ] || [ "$rc" -eq 0 ] || lost=" lost"
    if [ -e "$i.matched" ]; then  # stopped by its watcher: not lost, not retried
      lost=" log"
      echo "compute: the output matches a fail_on_log pattern: the job was stopped" >> "$i.log"
    fi
    echo "$rc$lost" > "$i.status.tmp" && mv -f "$i.status.tmp" "$i.status"
    echo "compute: job $i ended with exit code $rc at $(date)"
    pid= watcher=
  done < queue
}

case "${1-}" in
  start) shift; compute_start "$@" ;;
  lane) compute_lane "$2" ;;
  *) echo "usage: bash $(basename "$0") start [INDEX...]" >&2; exit 2 ;;
esac
