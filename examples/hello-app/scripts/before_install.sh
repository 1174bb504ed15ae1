#!/bin/bash
set -eu
. "$(dirname "$0")/env.sh"
mkdir -p "$HELLO_HOME"
echo "installing into $HELLO_HOME"
