command -v tmux >/dev/null 2>&1 || { echo "compute: tmux not found; PATH=$PATH" >&2; exit 127; }
compute_root="$HOME"/compute/logs
mkdir -p "$compute_root" && cd "$compute_root" && compute_root=$(pwd) || exit 1
compute_taken='  '
compute_name=train
compute_k=1
until case "$compute_taken" in *" $compute_name "*) false ;; esac &&
  ! tmux has-session -t "=$compute_name" 2>/dev/null && mkdir "$compute_name" 2>/dev/null; do
  [ -w . ] && [ "$compute_k" -lt 9999 ] ||
    { echo "compute: cannot create a session directory in $compute_root" >&2; exit 1; }
  compute_k=$((compute_k + 1))
  compute_name=train-$compute_k
done
(umask 077; while IFS= read -r compute_l && [ "$compute_l" != compute-secrets-0123abcd ]; do
  printf "%s\n" "$compute_l"; done > "$compute_name/secrets.env") || exit 1
cat > "$compute_name/launcher.sh" &&
  bash "$compute_name/launcher.sh" start  ||
  { compute_rc=$?; rm -rf "./$compute_name"; exit "$compute_rc"; }
echo "compute-session=$compute_name $compute_root/$compute_name"
