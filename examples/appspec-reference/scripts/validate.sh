#!/bin/bash
# ValidateService, run as `nobody`: check what a user of the service would see.
set -eu
test -r /srv/reference-app/www/index.html || { echo "index.html is not readable" >&2; exit 1; }
test -e /srv/reference-app/running || { echo "reference-app is not running" >&2; exit 1; }
echo "reference-app answers, checked as $(id -un)"
