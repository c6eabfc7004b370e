export LC_ALL=C GIT_TERMINAL_PROMPT=0
export GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes -o ConnectTimeout=20}"
parent="$HOME"/code
target="$parent"/BERL
repo=git@github.com:me/BERL.git
norm() { u=${1%/}; printf %s "${u%.git}"; }
if [ -e "$target/.git" ]; then
  url=$(git -C "$target" remote get-url origin 2>/dev/null) || url=
  if [ "$(norm "$url")" = "$(norm "$repo")" ]; then
    echo 'compute: already cloned, pulling instead'
    cd "$target" && git pull origin main
  else
    echo "compute: $target already holds another repository (origin: ${url:-none}); remove it or clone elsewhere" >&2
    exit 94
  fi
elif [ -d "$target" ] && [ -n "$(ls -A "$target")" ]; then
  echo "compute: $target exists and is not empty: remove it or clone elsewhere" >&2
  exit 94
else
  mkdir -p "$parent" || exit 1
  git clone --branch main --depth 1 -- "$repo" "$target"
fi
