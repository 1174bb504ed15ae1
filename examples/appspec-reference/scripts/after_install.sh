#!/bin/bash
# AfterInstall: the files are in place with their permissions; finish the installation.
set -eu
echo "$DEPLOYMENT_ID" > /srv/reference-app/etc/deployment-id
echo "installed $(ls /srv/reference-app/www | wc -l) entries under www"
