dest='/scratch/$USER'
name=proj
mkdir -p -- "$dest" || exit 1
tmp=$(mktemp -d "$dest/.compute-copy-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
tar -x -p --no-same-owner -f - -C "$tmp" || exit 1
target="$dest/$name"
if [ ! -e "$target" ] && [ ! -L "$target" ]; then
  mv -- "$tmp" "$target"
elif [ -d "$target" ]; then
  cp -R -P -p -- "$tmp"/. "$target"/  # merge into the existing tree
else
  echo "compute: $target exists and is not a directory: cannot copy the tree $name there" >&2
  exit 95
fi
