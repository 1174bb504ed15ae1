#!/bin/sh
# codedeploy-agent preinst (deb: install|upgrade [old-version]; RPM %pre: 1 install, 2 upgrade).
set -e

# The .deb does not list /opt itself (packaging/build.py strips it): a package that lists /opt
# makes dpkg remove it on purge when no other package does. dpkg then needs it to exist first.
if [ ! -d /opt ]; then
    install -d -m 0755 -o root -g root /opt
fi

exit 0
