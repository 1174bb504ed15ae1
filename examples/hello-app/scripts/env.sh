# Sourced by every hook: where the app lives and which port it uses.
HELLO_HOME="${HELLO_HOME:-/opt/hello-app}"
HELLO_PORT="${HELLO_PORT:-8080}"
PID_FILE="$HELLO_HOME/hello-app.pid"
