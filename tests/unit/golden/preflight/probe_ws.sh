LC_ALL=C; export LC_ALL
( mkdir -p -- "$HOME"/compute/logs && touch -- "$HOME"/compute/logs/.compute-probe-$$ && rm -f -- "$HOME"/compute/logs/.compute-probe-$$ && cd -- "$HOME"/compute/logs && pwd
) </dev/null 2>&1
printf '\n%s %s %s\n' @@compute-check@@ 0 "$?"
( command -v tmux >/dev/null || { echo 'tmux: command not found'; exit 127; }
v=$(tmux -V) || exit
case "$v" in "tmux "[01].*|"tmux 2.0"*)
  echo "$v is too old: compute's tmux jobs need tmux 2.1"; exit 1 ;;
esac
echo "$v"
) </dev/null 2>&1
printf '\n%s %s %s\n' @@compute-check@@ 1 "$?"
( version=$("$HOME"/venv/bin/python -c 'import sys; print(sys.executable, sys.version.split()[0])') || exit
pip=$("$HOME"/venv/bin/python -m pip --version) || exit
"$HOME"/venv/bin/python -c 'import os, sys, sysconfig; sys.exit(3 if sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 0)' || { echo '~/venv/bin/python is the system'"'"'s Python, marked externally managed (PEP 668): pip will refuse to install'; exit 3; }
echo "$version, ${pip%% from *}"
) </dev/null 2>&1
printf '\n%s %s %s\n' @@compute-check@@ 2 "$?"
( command -v git >/dev/null || { echo 'git: command not found'; exit 127; }
git --version
) </dev/null 2>&1
printf '\n%s %s %s\n' @@compute-check@@ 3 "$?"