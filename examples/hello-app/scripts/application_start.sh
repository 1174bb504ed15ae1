#!/bin/bash
# Start in the background; its output goes to a file so the hook's pipes close (CodeDeploy
# otherwise waits for them: "failed to close STDOUT").
set -eu
. "$(dirname "$0")/env.sh"
nohup python3 "$HELLO_HOME/current/server.py" --port "$HELLO_PORT" \
    >> "$HELLO_HOME/hello-app.log" 2>&1 < /dev/null &
echo $! > "$PID_FILE"
echo "started hello-app on port $HELLO_PORT (pid $!)"
