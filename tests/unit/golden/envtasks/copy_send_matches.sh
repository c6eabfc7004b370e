pattern='runs/*/out [0-9].txt'
IFS=  # the value of $pattern is globbed, never split into words
set +f
[ -z "${ZSH_VERSION-}" ] || setopt glob_subst no_nomatch  # glob as sh does
set -- "$HOME"/$pattern
# . and .. (which `.*` gives too) are never matches, as in Python's glob
files() { for m do case /${m%/} in */. | */..) ;; *) [ -d "$m" ] || printf '%s\0' "$m" ;; esac; done; }
trees() { for m do case /${m%/} in */. | */..) ;; *) [ ! -d "$m" ] || printf '%s\0' "$m" ;; esac; done; }
found=0 any_file=0
for m do  # an unmatched pattern stays as written: it names nothing (or a path named so)
  case /${m%/} in */. | */..) continue ;; esac
  if [ -e "$m" ]; then
    found=1
    [ -d "$m" ] || any_file=1
  elif [ -L "$m" ]; then
    echo "compute: $m is a link to nothing" >&2
    exit 95
  fi
done
[ "$found" = 1 ] || exit 96  # no match: nothing sent
files "$@"; trees "$@"; printf '\0'  # the paths, in the order they are sent
changed=0
sent() {  # tar exits 1 when a file changed while it was read: a warning
  [ "$1" = 0 ] || [ "$1" = 1 ] || exit "$1"
  [ "$1" = 0 ] || changed=1
}
if [ "$any_file" = 1 ]; then
  files "$@" | tar -c -h --hard-dereference --no-recursion -P --transform='s,^.*/,,' -f - --null -T -
  sent $?
fi
for m do
  [ -d "$m" ] || continue
  case /${m%/} in */. | */..) continue ;; esac
  (cd -- "$m" || exit 95; exec tar -c -f - --exclude=.git '--exclude=*.ckpt' .)
  sent $?
done
exit "$changed"
