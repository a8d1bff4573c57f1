#!/bin/sh
# make demo: the three programs on the example userdb, as an unprivileged user,
# with no system service, no venv and nothing installed (bin/ runs the checkout
# with /usr/bin/python3 -IS).  It copies examples/userdb to a temporary
# directory, starts courierpassd on a free 127.0.0.1 port, changes a password
# with a scripted poppassd client, shows courierpasswd accepting the new password
# and refusing the old one, shows courieruserinfo, then stops what it started and
# removes the directory.  Exit 0 when every step gave the expected answer.
#
# Run as root it drops to nobody first (from a world-readable copy of the
# checkout): as root, courierpasswd would become the account's uid and chdir to
# its home, as checkpassword programs do, and the example homes do not exist.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
PYTHON=/usr/bin/python3
USER_NAME=andrew@example.com
OLD_PASS=Andrew-Imap-1
NEW_PASS=Andrew-New-Pw-2
SERVICE=imap

if [ "$(id -u)" = 0 ] && [ -z "${AUTHKIT_DEMO_DROPPED-}" ]; then
    copy=$(mktemp -d "${TMPDIR:-/tmp}/authkit-demo-src.XXXXXX") || exit 111
    cp -R "$top/bin" "$top/authkit" "$top/examples" "$copy/" && chmod -R a+rX "$copy" || {
        rm -rf "$copy"; exit 111; }
    echo "(running as root: the demo runs as nobody, from a copy of the checkout)"
    setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
        env AUTHKIT_DEMO_DROPPED=1 TMPDIR=/tmp sh "$copy/examples/demo.sh"
    rc=$?
    rm -rf "$copy"
    exit $rc
fi

cd "$top" || exit 111
demo=$(mktemp -d "${TMPDIR:-/tmp}/authkit-demo.XXXXXX") || exit 111
server=""
failed=0

cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null
        wait "$server" 2>/dev/null
    fi
    rm -rf "$demo"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

say() { printf '\n$ %s\n' "$*"; }
expect() {  # expect WHAT WANTED GOT
    if [ "$2" = "$3" ]; then
        echo "exit $3"
    else
        echo "exit $3 (expected $2: $1 failed)"
        failed=1
    fi
}
show_pw_fields() {
    grep "^$USER_NAME	" "$AUTHKIT_USERDB" | tr '|' '\n' | grep 'pw='
}

echo "authkit demo: courierpassd, courierpasswd and courieruserinfo on examples/userdb"
echo "(user $(id -un), temporary directory $demo)"

say "cp examples/userdb \$DEMO/userdb && chmod 600 \$DEMO/userdb"
cp examples/userdb "$demo/userdb" && chmod 600 "$demo/userdb" || exit 111
say "export AUTHKIT_USERDB=\$DEMO/userdb"
AUTHKIT_USERDB="$demo/userdb"
export AUTHKIT_USERDB
say "grep '^$USER_NAME' \$AUTHKIT_USERDB | tr '|' '\\n' | grep pw="
show_pw_fields

say "bin/courierpassd -s $SERVICE --stderr --listen 127.0.0.1:0 2>\$DEMO/courierpassd.log &"
: >"$demo/courierpassd.log"  # exists before the loop reads it, whenever the shell opens it
bin/courierpassd -s "$SERVICE" --stderr --listen 127.0.0.1:0 2>>"$demo/courierpassd.log" &
server=$!
port=""
tries=0
while [ -z "$port" ] && [ $tries -lt 300 ]; do  # up to 30 s on a busy machine
    port=$(sed -n 's/^courierpassd: listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$demo/courierpassd.log")
    if [ -z "$port" ]; then
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
        tries=$((tries + 1))
    fi
done
cat "$demo/courierpassd.log"
if [ -z "$port" ]; then
    echo "courierpassd did not start"
    exit 1
fi

say "examples/poppassd-client.py 127.0.0.1 $port $USER_NAME $OLD_PASS $NEW_PASS"
"$PYTHON" -IS examples/poppassd-client.py 127.0.0.1 "$port" "$USER_NAME" "$OLD_PASS" "$NEW_PASS"
expect "the password change" 0 $?

say "grep '^$USER_NAME' \$AUTHKIT_USERDB | tr '|' '\\n' | grep pw="
show_pw_fields

say "printf '$USER_NAME\\0$NEW_PASS\\0' | bin/courierpasswd --stderr -s $SERVICE -- /usr/bin/true 3<&0 2>&1"
printf '%s\0%s\0' "$USER_NAME" "$NEW_PASS" | bin/courierpasswd --stderr -s "$SERVICE" -- /usr/bin/true 3<&0 2>&1
expect "courierpasswd with the new password" 0 $?

say "printf '$USER_NAME\\0$OLD_PASS\\0' | bin/courierpasswd --stderr -s $SERVICE -- /usr/bin/true 3<&0 2>&1"
printf '%s\0%s\0' "$USER_NAME" "$OLD_PASS" | bin/courierpasswd --stderr -s "$SERVICE" -- /usr/bin/true 3<&0 2>&1
expect "courierpasswd refusing the old password" 1 $?

say "bin/courieruserinfo $USER_NAME"
bin/courieruserinfo "$USER_NAME"
expect "courieruserinfo" 0 $?

say "bin/getvuserhome.sh andrew example.com"
bin/getvuserhome.sh andrew example.com
expect "getvuserhome.sh" 0 $?

say "kill \$!   # stop courierpassd; the rest of its log:"
kill "$server" 2>/dev/null
wait "$server"
rc=$?
server=""
grep -v '^courierpassd: listening on' "$demo/courierpassd.log"
expect "courierpassd's shutdown" 0 $rc

if [ "$failed" = 0 ]; then
    echo
    echo "demo: every step gave the expected answer"
fi
exit $failed
