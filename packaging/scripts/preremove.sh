#!/bin/sh
# codedeploy-agent prerm (deb: remove|upgrade|deconfigure|failed-upgrade; RPM %preun: 0 erase,
# 1 upgrade).
#
# Removal stops and disables the agent. Stopping lets a running deployment's hook finish (up to
# :kill_agent_max_wait_time_seconds:, like `systemctl stop`); applications started by hooks keep
# running (KillMode=process). An upgrade leaves the agent running: the new package restarts it
# once it is idle.
set -e

APP=/opt/codedeploy-agent

case "$1" in
    remove|deconfigure|0) removing=yes ;;
    upgrade|failed-upgrade) removing= ;;
    [0-9]*) exit 0 ;;  # RPM upgrade: the new version's files and byte code are already in place
    *) echo "prerm called with unknown argument '$1'" >&2; exit 1 ;;
esac

if [ -n "$removing" ] && [ -d /run/systemd/system ]; then
    systemctl stop codedeploy-agent-restart-when-idle.service >/dev/null 2>&1 || true
    systemctl disable --now codedeploy-agent.service >/dev/null 2>&1 || true
fi

# Byte code written by the postinst (or by Python at run time) belongs to no package: remove it
# so that dpkg and RPM can remove the directories.
if [ -d "$APP/venv" ]; then
    find "$APP/venv" -depth -type d -name __pycache__ -exec rm -rf {} + 2>/dev/null || true
fi

exit 0
