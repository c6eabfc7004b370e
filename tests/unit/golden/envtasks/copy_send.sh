src="$HOME"/'runs/exp 1'
if [ -d "$src" ]; then
  cd -- "$src" || exit 95
  tar -c -f - --exclude=.git '--exclude=*.ckpt' --exclude=data/raw .
elif [ -e "$src" ]; then
  cd -- "$(dirname -- "$src")" || exit 95
  tar -c -h -f - -- "$(basename -- "$src")"
else
  echo "compute: source not found: $src" >&2
  exit 95
fi
