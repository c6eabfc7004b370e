req=$(mktemp) || exit 1
trap 'rm -f "$req"' EXIT
cat > "$req" || exit 1
if "$HOME"/'envs/x y/bin/python' -c 'import os, sys; sys.exit(0 if sys.prefix == sys.base_prefix and not os.path.isdir(os.path.join(sys.prefix, "conda-meta")) else 1)'; then set -- --user; else set --; fi
"$HOME"/'envs/x y/bin/python' -m pip install --disable-pip-version-check --no-input "$@" -r "$req" --upgrade -e "$HOME"/'code/my proj' a --index-url http://127.0.0.1:8000/simple --no-cache-dir
