#!/bin/bash
# ApplicationStop: runs from the PREVIOUS revision. Stop what it started; succeed if it is gone.
set -eu
echo "stopping reference-app (deployment $DEPLOYMENT_ID, group $DEPLOYMENT_GROUP_NAME)"
rm -f /srv/reference-app/running
