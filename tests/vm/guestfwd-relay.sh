#!/usr/bin/env bash
# guestfwd-relay.sh PORT — qemu runs this once per guest connection to 169.254.169.254:80
# (guestfwd=...-cmd:...), with the guest's connection on stdin/stdout; it relays to 127.0.0.1:PORT.
# A chardev target (guestfwd=...-tcp:127.0.0.1:PORT) connects once per qemu run: the guest's second
# connection never reaches the server (seen with qemu 7.2), and a metadata client makes several.
# The server closing ends the relay; the guest closing ends it once the answer is through (10 s at most).
set -euo pipefail
exec 3<>"/dev/tcp/127.0.0.1/$1" 4<&0
cat <&3 &
down=$!
# A background job's stdin would be /dev/null without the explicit redirection.
cat <&4 >&3 &
up=$!
wait -n || true
# The guest closed its side first: closed for good, or only half-closed and still reading. Let the
# server's answer drain for up to 10 s (a keep-alive server never closes).
for _ in $(seq 100); do
    kill -0 "$down" 2>/dev/null || break
    sleep 0.1
done
kill "$down" "$up" 2>/dev/null || true
