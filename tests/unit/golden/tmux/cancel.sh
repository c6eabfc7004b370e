compute_cancel() {
  if [ -e "$2/$3.status" ] || [ ! -d "$2" ]; then echo "ended $1"; return; fi
  : > "$2/$3.cancelled"
  local pid=
  if [ -e "$2/$3.pid" ] && IFS= read -r pid < "$2/$3.pid" && kill -TERM -- "-$pid" 2>/dev/null; then
    { sleep 10; kill -KILL -- "-$pid"; } </dev/null >/dev/null 2>&1 &
  fi
  echo "cancelled $1"
}
while IFS= read -r -d '' compute_j && IFS= read -r -d '' compute_f && IFS= read -r -d '' compute_i; do
  compute_cancel "$compute_j" "$compute_f" "$compute_i"
done