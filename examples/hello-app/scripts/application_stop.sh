#!/bin/bash
# Stop the running version (this script comes from the previously installed revision).
set -eu
. "$(dirname "$0")/env.sh"
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    pid=$(cat "$PID_FILE")
    echo "stopping hello-app (pid $pid)"
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$PID_FILE"
