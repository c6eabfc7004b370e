set --
"$HOME"/'envs/x y/bin/python' -m pip uninstall --disable-pip-version-check --no-input "$@" -y a b
