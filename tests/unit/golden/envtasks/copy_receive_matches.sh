dest="$HOME"/'Atari ROM'
mkdir -p -- "$dest" || exit 1
tmp=$(mktemp -d "$dest/.compute-copy-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
tar -x -p --no-same-owner -f - -C "$tmp" || exit 1
set +f
[ -z "${ZSH_VERSION-}" ] || setopt glob_subst no_nomatch  # glob as sh does
place() {  # $1: check (all must fit before any moves) or move
  for new in "$tmp"/* "$tmp"/.[!.]* "$tmp"/..?*; do
    [ -e "$new" ] || continue  # a pattern that matched nothing
    name=${new##*/}
    target="$dest/$name"
    if [ -d "$new" ]; then
      if [ ! -e "$target" ] && [ ! -L "$target" ]; then
        [ "$1" = check ] || mv -- "$new" "$target" || exit 1
      elif [ -d "$target" ]; then
        [ "$1" = check ] || cp -R -P -p -- "$new"/. "$target"/ || exit 1  # merge
      else
        echo "compute: $target exists and is not a directory: cannot copy the tree $name there" >&2
        exit 95
      fi
    elif [ -d "$target" ]; then
      echo "compute: $target is a directory: cannot replace it with the file $name" >&2
      exit 95
    else
      [ "$1" = check ] || mv -f -- "$new" "$target" || exit 1
    fi
  done
}
place check
place move
