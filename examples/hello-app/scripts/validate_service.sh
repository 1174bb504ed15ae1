#!/bin/bash
# Healthy within 5 s, or the deployment fails (and a control plane rolls back).
set -u
. "$(dirname "$0")/env.sh"
for _ in $(seq 50); do
    # bash's /dev/tcp: no curl needed on the host.
    if { exec 3<>"/dev/tcp/127.0.0.1/$HELLO_PORT"; } 2>/dev/null; then
        printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
        if grep -q '^ok' <&3; then
            exec 3<&-
            echo "hello-app is healthy on port $HELLO_PORT"
            exit 0
        fi
        exec 3<&-
    fi
    sleep 0.1
done
echo "hello-app did not answer on http://127.0.0.1:$HELLO_PORT/health" >&2
exit 1
