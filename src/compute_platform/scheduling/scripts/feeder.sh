# The feeder of chunk $1: it starts once chunk $1 - 1 has ended (afterany), submits the scripts that
# `compute run` staged for chunk $1 in the feed's folder (<chunk>.<batch>.sbatch), then the feeder of
# the next chunk, and appends `<token> <job id> <time>` to `submitted` for each job. Once `stop`
# exists (`compute cancel --task`), nothing more is submitted.
compute_feed=@FEED@
compute_dir=@DIR@
chunk=$1
shopt -s nullglob
# The jobs run in the environment this job got from the login node, as if compute had submitted
# them: not with the feeder's own SLURM_* variables, and from the home directory.
for compute_var in $(compgen -e SLURM); do
  [ "$compute_var" = SLURM_CONF ] || unset "$compute_var"
done
cd || exit 1

compute_now() { date -u +%Y-%m-%dT%H:%M:%S+00:00; }

# TOKEN SBATCH-ARGS...: submit once and print the job id. While a submit limit or an unreachable
# controller refuses the job, try again; a retry first looks for the job of a lost answer by its token.
compute_sbatch() {
  local token=$1 out attempt=0
  shift
  while [ ! -e "$compute_dir/stop" ]; do
    if [ "$attempt" -gt 0 ]; then
      out=$(squeue -h -u "$(id -un)" -o '%k|%F' | grep -F "compute-submission:$token|" | head -n 1)
      if [ -n "$out" ]; then echo "${out##*|}"; return 0; fi
    fi
    if out=$(sbatch --parsable --comment="compute-submission:$token" "$@" 2>&1); then
      out=${out##*$'\n'}
      echo "${out%%;*}"
      return 0
    fi
    echo "compute: sbatch $*: $out" >&2
    case "$out" in
      *MaxSubmitJob* | *"Unable to contact"* | *"temporarily unable"* | *"Socket timed out"* | \
        *"Zero Bytes"* | *"Connection refused"*) ;;
      *) return 1 ;;
    esac
    attempt=$((attempt + 1))
    sleep @PAUSE@
  done
  return 1
}

compute_stop() {
  [ -e "$compute_dir/stop" ] && { echo "compute: the feed was stopped"; exit 0; }
  exit 1
}

ids=
for f in "$compute_dir/$(printf %06d "$chunk")".*.sbatch; do
  token=$compute_feed.$(basename "$f" .sbatch)
  # already submitted by an earlier run of this feeder
  id=$(grep -F "$token " "$compute_dir/submitted" 2>/dev/null | head -n 1 | cut -d' ' -f2)
  if [ -z "$id" ]; then
    id=$(compute_sbatch "$token" "$f") || compute_stop
    printf '%s %s %s\n' "$token" "$id" "$(compute_now)" >> "$compute_dir/submitted"
    echo "compute: chunk $chunk: $(basename "$f") is job $id"
  fi
  ids=$ids:$id
done
[ -n "$ids" ] || { echo "compute: no script of chunk $chunk in $compute_dir" >&2; exit 1; }
next=$((chunk + 1))
if [ "$next" -le @LAST@ ]; then
  token=$compute_feed.$(printf %06d "$next").feeder
  id=$(compute_sbatch "$token" --dependency="afterany$ids" "$compute_dir/feed.sh" "$next") || compute_stop
  printf '%s %s %s\n' "$token" "$id" "$(compute_now)" >> "$compute_dir/submitted"
  echo "compute: the feeder of chunk $next is job $id"
fi
# sbatch keeps its own copy of each script, and the local archive has them
rm -f "$compute_dir/$(printf %06d "$chunk")".*.sbatch
