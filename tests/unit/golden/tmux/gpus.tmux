#!/usr/bin/env bash
# compute tmux launcher, format 1. Task 'gpu sweep': 4 jobs, at most 2 at once.
# `bash launcher.sh start [INDEX...]` starts a tmux session named after this file's directory with one
# window ("lane") per job that may run at once; each lane runs, one after another, the next jobs of the
# queue that no other lane has claimed. Job INDEX leaves its files next to this script: INDEX.log
# (stdout+stderr), INDEX.started, INDEX.pid (its process group), INDEX.status (exit code, on exit).
compute_dir=$(cd "$(dirname "$0")" && pwd) || exit 1
cd "$compute_dir" || exit 1
compute_max_lanes=2  # 0: one lane per job
compute_gpus=(0 1)  # lane K gives its jobs CUDA_VISIBLE_DEVICES=${compute_gpus[K]}
compute_gpu=

compute_prelude() {
export CUDA_VISIBLE_DEVICES="$compute_gpu"
:
}

job_0() {  # --model small lr=0.1
compute_metrics="$compute_dir/0.metrics"  # COMPUTE_METRICS (JobPaths.metrics)
compute_prelude
printf '%s\n' 'CMD python train.py --model small --lr=0.1'
compute_rc=0
seed=7; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".0.jsonl
(
python train.py --model small --lr=0.1
)
rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc
exit "$compute_rc"
}

job_1() {  # --model large lr=0.1
compute_metrics="$compute_dir/1.metrics"  # COMPUTE_METRICS (JobPaths.metrics)
compute_prelude
printf '%s\n' 'CMD python train.py --model large --lr=0.1'
compute_rc=0
seed=7; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".0.jsonl
(
python train.py --model large --lr=0.1
)
rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc
exit "$compute_rc"
}

job_2() {  # --model small lr=0.01
compute_metrics="$compute_dir/2.metrics"  # COMPUTE_METRICS (JobPaths.metrics)
compute_prelude
printf '%s\n' 'CMD python train.py --model small --lr=0.01'
compute_rc=0
seed=7; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".0.jsonl
(
python train.py --model small --lr=0.01
)
rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc
exit "$compute_rc"
}

job_3() {  # --model large lr=0.01
compute_metrics="$compute_dir/3.metrics"  # COMPUTE_METRICS (JobPaths.metrics)
compute_prelude
printf '%s\n' 'CMD python train.py --model large --lr=0.01'
compute_rc=0
seed=7; export SEED="$seed"
export COMPUTE_METRICS="$compute_metrics".0.jsonl
(
python train.py --model large --lr=0.01
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
  [ $# -gt 0 ] || set -- 0 1 2 3
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
