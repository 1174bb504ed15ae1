#!/bin/sh
# codedeploy-agent postinst (deb: configure [old-version] | abort-*; RPM %post: 1 install,
# 2 or more upgrade).
#
# - Creates the agent's directories (root:root 0755: hooks that run as other users start inside
#   the deployment root, and `codedeploy-agent status` reads the state as any user).
# - Byte-compiles the bundled virtualenv with the host's Python (prerm/preun removes the caches).
# - A fresh install neither enables nor starts the service: the agent needs its broker, thing
#   name and trusted key first (`systemctl enable --now codedeploy-agent` after configuring).
# - An upgrade restarts a running agent only when no deployment is running; otherwise once the
#   deployment has ended (libexec/restart-when-idle). The deb does it here; the RPM in %postun,
#   after the old files are gone.
set -e

APP=/opt/codedeploy-agent

case "$1" in
    configure) mode=${2:+upgrade}; mode=${mode:-install} ;;
    1) mode=install ;;
    [0-9]*) mode=rpm-upgrade ;;  # %postun of the old package restarts the agent
    abort-*) exit 0 ;;
    *) echo "postinst called with unknown argument '$1'" >&2; exit 1 ;;
esac

install -d -m 0755 -o root -g root \
    "$APP/state" "$APP/state/.pid" "$APP/deployment-root" /var/log/aws /var/log/aws/codedeploy-agent

"$APP/venv/bin/python3" -m compileall -q -j 0 "$APP/venv/lib" >/dev/null

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$mode" = upgrade ]; then
        "$APP/libexec/restart-when-idle" --schedule || true
    elif [ "$mode" = install ]; then
        echo "codedeploy-agent: configure /etc/codedeploy-agent/conf/codedeployagent.yml, then" \
            "run: systemctl enable --now codedeploy-agent && codedeploy-agent doctor"
    fi
fi

exit 0
