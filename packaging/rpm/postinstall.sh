install -d -o badger -g badger -m 0750 /var/lib/badger
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    [ "$1" -eq 1 ] && systemctl preset badger.service >/dev/null 2>&1 || :
fi
exit 0
