# Recovery inside a Slurm job (retry.checkpoint, fail_on_log): what the cluster can do without compute.
# Set before: compute_self (the job's id as scontrol names it), compute_status (its status file),
# compute_pid (the job body, once started), COMPUTE_ATTEMPT, COMPUTE_MAX_ATTEMPTS,
# compute_fail_on_log (patterns), compute_logs (the files they are looked for in).

# The job body's processes, deepest first: the program runs in subshells of the body.
compute_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    compute_tree "$child"
    printf '%s\n' "$child"
  done
}

# The processes of the job body that are not this script's own subshells (those have its command
# line): the program and what it started, which get the checkpoint signal.
compute_programs() {
  local me pid
  me=$(tr '\0' ' ' < /proc/$$/cmdline)
  for pid in $(compute_tree "$1"); do
    [ "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" = "$me" ] || printf '%s\n' "$pid"
  done
}

# Wait for the job body to end; a trap that returns (a checkpoint on the last attempt) interrupts
# `wait`, which is then waited again. Leaves the body's exit code in compute_rc.
compute_wait() {
  while :; do
    wait "$compute_pid"
    compute_rc=$?
    kill -0 "$compute_pid" 2>/dev/null || return 0
  done
}

# Near the time limit (sbatch --signal=B:SIG@SECONDS): let the program checkpoint, then requeue the
# job, which starts again as its next attempt. On the last attempt the time limit ends it.
compute_checkpoint() {
  echo "compute: attempt $COMPUTE_ATTEMPT of $COMPUTE_MAX_ATTEMPTS reaches its time limit soon: checkpoint" >&2
  if declare -F compute_checkpoint_command >/dev/null; then
    (compute_checkpoint_command) >&2
  elif [ -n "$compute_pid" ]; then
    kill -s "$COMPUTE_CHECKPOINT_SIGNAL" $(compute_programs "$compute_pid") 2>/dev/null
  fi
  [ "$COMPUTE_ATTEMPT" -lt "$COMPUTE_MAX_ATTEMPTS" ] || return 0
  # the program saves and exits; one that goes on is stopped shortly before the limit
  local left=$((compute_checkpoint_wait))
  while [ "$left" -gt 0 ] && kill -0 "$compute_pid" 2>/dev/null; do
    sleep 1
    left=$((left - 1))
  done
  if kill -0 "$compute_pid" 2>/dev/null; then
    kill -TERM $(compute_tree "$compute_pid") "$compute_pid" 2>/dev/null
  fi
  compute_wait
  if [ "$compute_rc" -eq 0 ]; then
    compute_record 0 exit  # it finished while saving: nothing to resume
    exit 0
  fi
  compute_record "$compute_rc" requeue
  trap 'exit 0' TERM  # the requeue stops this script: its status stays `requeue`
  scontrol requeue "$compute_self" >&2 || { compute_record "$compute_rc" exit; exit "$compute_rc"; }
  while :; do  # in the background: a trap waits for a command in the foreground to end
    sleep 60 &
    wait "$!"
  done
}

# fail_on_log: every COMPUTE_LOG_EVERY seconds, a look at what the job wrote since in each of its files
# (log-look.sh); the first match stops the job (USR2 to this script), which is then not retried.
compute_log_watch() {
  local compute_log_args=() pattern file
  for pattern in "${compute_fail_on_log[@]}"; do compute_log_args+=(-e "$pattern"); done
  while sleep "${COMPUTE_LOG_EVERY:-10}"; do
    for file in "${compute_logs[@]}"; do
      if compute_seen[$file]=$(compute_log_look "$file" "${compute_seen[$file]:-0}"); then
        kill -USR2 $$  # this script: $$ is its pid in a subshell too
        return 0
      fi
    done
  done
}

# What earlier attempts wrote (a requeued job appends to its files) is theirs: the watcher looks from
# where the files end before this attempt's job starts.
compute_log_mark() {
  local file
  declare -gA compute_seen
  for file in "${compute_logs[@]}"; do compute_seen[$file]=$(stat -c %s -- "$file" 2>/dev/null || echo 0); done
}

compute_log_stop() {
  echo "compute: the output matches a fail_on_log pattern: stopping the job" >&2
  [ -z "$compute_watcher" ] || kill "$compute_watcher" 2>/dev/null
  kill -TERM $(compute_tree "$compute_pid") "$compute_pid" 2>/dev/null
  compute_record 1 log
  exit 1
}
