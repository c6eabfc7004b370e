export LC_ALL=C GIT_TERMINAL_PROMPT=0
export GIT_SSH_COMMAND="${GIT_SSH_COMMAND:-ssh -o BatchMode=yes -o ConnectTimeout=20}"
cd '/srv/it'"'"'s here' || exit 1
git push origin dev
