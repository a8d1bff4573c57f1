#!/bin/sh
# getvuserhome.sh USER [DOMAIN]: print the home directory of USER@DOMAIN (USER
# alone when DOMAIN is empty or missing) and nothing else.  For tmda-ofmipd's
# -S/--vhome-script; see docs/getvuserhome.sh.8.
#
# Exit status: 0 found (stdout = the directory and a newline), 1 unknown user,
# 2 usage, 111 temporary failure; stdout is empty whenever the status is not 0.
# Every argument is quoted and passed after "--"; nothing is eval'ed.
#
# courieruserinfo is $COURIERUSERINFO if set, else the one in this script's
# directory, else the one beside the script's symlink target, else from $PATH.

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ -z "$1" ]; then
    echo "usage: getvuserhome.sh USER [DOMAIN]" >&2
    exit 2
fi

if [ -n "${2-}" ]; then
    login="$1@$2"
else
    login="$1"
fi

prog="${COURIERUSERINFO-}"
if [ -z "$prog" ]; then
    self="$0"
    case "$self" in
        */*) ;;
        *) self="$(command -v -- "$self" 2>/dev/null)" ;;  # found through $PATH
    esac
    case "$self" in
        */*) here="${self%/*}" ;;
        *) here="" ;;
    esac
    if [ -n "$here" ] && [ -x "$here/courieruserinfo" ]; then
        prog="$here/courieruserinfo"
    else
        target="$(readlink -f -- "$self" 2>/dev/null)"
        case "$target" in
            */*) there="${target%/*}" ;;
            *) there="" ;;
        esac
        if [ -n "$there" ] && [ -x "$there/courieruserinfo" ]; then
            prog="$there/courieruserinfo"
        else
            prog="courieruserinfo"
        fi
    fi
fi

out="$("$prog" --homedir -- "$login")"
rc=$?
if [ "$rc" -ne 0 ]; then
    exit "$rc"
fi
case "$out" in
    homedir=?*) ;;
    *)
        echo "getvuserhome.sh: unexpected output from $prog" >&2
        exit 111
        ;;
esac
printf '%s\n' "${out#homedir=}"
