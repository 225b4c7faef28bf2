getent group badger >/dev/null || groupadd -r badger
getent passwd badger >/dev/null || useradd -r -g badger -d /var/lib/badger -s /sbin/nologin -c "badger stats agent" badger
exit 0
