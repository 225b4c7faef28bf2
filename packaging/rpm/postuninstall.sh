if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    [ "$1" -ge 1 ] && systemctl try-restart badger.service >/dev/null 2>&1 || :
fi
exit 0
