compute_cancel() {
  if [ -e "$2/$3.status" ] || [ ! -d "$2" ]; then echo "ended $1"; return; fi
  : > "$2/$3.cancelled"
  local pid=
  if [ -e "$2/$3.pid" ] && IFS= read -r pid < "$2/$3.pid" && kill -TERM -- "-$pid" 2>/dev/null; then
    { sleep @GRACE@; kill -KILL -- "-$pid"; } </dev/null >/dev/null 2>&1 &
  fi
  echo "cancelled $1"
}
