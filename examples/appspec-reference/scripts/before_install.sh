#!/bin/bash
# BeforeInstall: prepare the host before Install copies the files.
set -eu
mkdir -p /srv/reference-app
echo "preparing /srv/reference-app for $APPLICATION_NAME"
