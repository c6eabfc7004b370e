if "$HOME"/'envs/x y/bin/python' -c 'import os, sys; sys.exit(0 if sys.prefix == sys.base_prefix and not os.path.isdir(os.path.join(sys.prefix, "conda-meta")) else 1)'; then set -- --user; else set --; fi
"$HOME"/'envs/x y/bin/python' -m pip install --disable-pip-version-check --no-input "$@" numpy torch==2.3.1 'pandas>=2; python_version>'"'"'3'"'"''
