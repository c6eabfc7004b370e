dest="$HOME"/'data in'
name='it'"'"'s.txt'
mkdir -p -- "$dest" || exit 1
tmp=$(mktemp -d "$dest/.compute-copy-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
tar -x -p --no-same-owner -f - -C "$tmp" || exit 1
target="$dest/$name"
if [ -d "$target" ]; then
  echo "compute: $target is a directory: cannot replace it with the file $name" >&2
  exit 95
fi
mv -f -- "$tmp/$name" "$target"
