compute_sessions=" $(tmux list-sessions -F '#{session_name}' 2>/dev/null |
  tr '\n' ' ') "
compute_state() {
  local dir=0 started=0 status=- alive=0 cancelled=0 session=0 pid=
  [ -d "$2" ] && dir=1
  [ -e "$2/$3.started" ] && started=1
  [ -e "$2/$3.status" ] && { IFS= read -r status < "$2/$3.status" || status=-; }
  [ -e "$2/$3.pid" ] && IFS= read -r pid < "$2/$3.pid" && kill -0 "$pid" 2>/dev/null && alive=1
  [ -e "$2/$3.cancelled" ] && cancelled=1
  case "$compute_sessions" in *" ${2##*/} "*) session=1 ;; esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" $dir $started "$status" $alive $cancelled $session
}
while IFS= read -r -d '' compute_j && IFS= read -r -d '' compute_f && IFS= read -r -d '' compute_i; do
  compute_state "$compute_j" "$compute_f" "$compute_i"
done