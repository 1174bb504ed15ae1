#!/bin/bash
# ApplicationStart: start the service. A background process must not keep the hook's output
# open, or the agent waits for it: redirect it (cmd > /dev/null 2>&1 < /dev/null &).
set -eu
date -u +%FT%TZ > /srv/reference-app/running
echo "reference-app started"
