#!/bin/sh
# codedeploy-agent postrm (deb: remove|purge|upgrade|failed-upgrade|abort-*|disappear;
# RPM %postun: 0 erase, 1 upgrade).
#
# remove (and RPM erase) keeps what operators and deployments made: the config, the agent's
# state, the deployment root, the logs. purge removes what the package created and nothing
# else, at the default paths: /opt/codedeploy-agent (state, deployment root: the revisions'
# copies and the deployment logs) and /var/log/aws/codedeploy-agent. Files that deployments
# installed elsewhere stay, and so does /opt. /etc/codedeploy-agent goes only if it is empty
# after dpkg removed the conffiles (keys and certificates an operator put there stay).
# RPM has no purge: erasing is a remove; README "Install on a host" lists what to delete.
set -e

APP=/opt/codedeploy-agent

case "$1" in
    purge)
        rm -rf "$APP/state" "$APP/deployment-root" "$APP/venv" "$APP/libexec" \
            /var/log/aws/codedeploy-agent
        rmdir "$APP" /var/log/aws /etc/codedeploy-agent/conf /etc/codedeploy-agent \
            2>/dev/null || true
        ;;
    remove|0)
        ;;
    [0-9]*)
        # RPM upgrade: the old files are gone now; restart a running agent when it is idle.
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload >/dev/null 2>&1 || true
            "$APP/libexec/restart-when-idle" --schedule || true
        fi
        exit 0
        ;;
    upgrade|failed-upgrade|abort-install|abort-upgrade|disappear)
        exit 0
        ;;
    *) echo "postrm called with unknown argument '$1'" >&2; exit 1 ;;
esac

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi

exit 0
