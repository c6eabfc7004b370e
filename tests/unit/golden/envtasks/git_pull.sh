export LC_ALL=C GIT_TERMINAL_PROMPT=0
export GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes -o ConnectTimeout=20}"
cd "$HOME"/code/BERL || exit 1
git pull
