#!/bin/bash
# Put the new revision's app in place ($PWD is the unpacked revision).
set -eu
. "$(dirname "$0")/env.sh"
rm -rf "$HELLO_HOME/current.new"
cp -a app "$HELLO_HOME/current.new"
rm -rf "$HELLO_HOME/current"
mv "$HELLO_HOME/current.new" "$HELLO_HOME/current"
echo "installed hello-app v$(cat "$HELLO_HOME/current/VERSION") for $DEPLOYMENT_ID"
