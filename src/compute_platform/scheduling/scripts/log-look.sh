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
