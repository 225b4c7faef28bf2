#!/usr/bin/env bash
# Builds the .deb and .rpm, installs the .deb on this machine, runs badger from it as the
# badger user, checks the installed files, purges it; checks the .rpm's metadata and
# installs it into a scratch root; verifies the systemd unit. Installs the packaging tools
# only when they are missing. Run by scripts/test.sh (skip with BADGER_SKIP_PACKAGING=1).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"

need=()
command -v rpm >/dev/null || need+=(rpm)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v adduser >/dev/null || need+=(adduser)
command -v runuser >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
cargo generate-rpm --version >/dev/null 2>&1 || cargo install cargo-generate-rpm --locked --version 0.21.1

echo "==> release build (build.rs writes the man page and completions to target/release/assets/)"
cargo build --release --locked
echo "release binary: $(stat -c %s target/release/badger) bytes"
rm -rf target/debian target/generate-rpm
cargo deb --no-build --locked
cargo generate-rpm
DEB=$(ls target/debian/badger_*.deb)
RPM=$(ls target/generate-rpm/badger-*.rpm)
echo "packages: $DEB ($(stat -c %s "$DEB") bytes), $RPM ($(stat -c %s "$RPM") bytes)"

fail() { echo "package test FAILED: $*" >&2; exit 1; }

echo "==> release layout: the constants in link order (crates/linkorder, packaging/data-order.txt)"
readelf -SW target/release/badger > target/release-sections.txt
grep -q ' \.rodata\.hot ' target/release-sections.txt || fail "no .rodata.hot: the release link fell back to the default layout"
ls -t target/release/deps/badger-*.data-order.ld > target/data-order-scripts.txt
head -1 "$(head -1 target/data-order-scripts.txt)"

echo "==> .deb: install, run as badger, files, purge"
# (outputs go to files first: `cmd | grep -q` fails under pipefail when grep exits early)
dpkg-deb -I "$DEB" > target/deb-info.txt
grep -q "Package: badger" target/deb-info.txt || fail "deb metadata"
$SUDO dpkg -i "$DEB"
for f in /usr/bin/badger /etc/badger/config.json /etc/badger/conf.d/cpu.conf /etc/badger/conf.d/stdout.conf \
         /usr/share/man/man1/badger.1.gz /usr/share/bash-completion/completions/badger \
         /usr/share/zsh/vendor-completions/_badger /usr/share/fish/vendor_completions.d/badger.fish \
         /usr/lib/badger/modules/README /usr/lib/badger/emitters/README /lib/systemd/system/badger.service \
         /usr/lib/sysusers.d/badger.conf; do
    [ -e "$f" ] || fail "missing $f"
done
getent passwd badger >/dev/null || fail "no badger user"
[ "$(stat -c %U /var/lib/badger)" = badger ] || fail "/var/lib/badger not owned by badger"
dpkg-query -W -f='${Conffiles}\n' badger > target/deb-conffiles.txt
for f in /etc/badger/config.json $(cd conf.d && ls *.conf | sed 's|^|/etc/badger/conf.d/|'); do
    grep -q " $f " target/deb-conffiles.txt || fail "$f is not a conffile"
done
$SUDO runuser -u badger -- /usr/bin/badger --check -f /etc/badger/config.json
$SUDO runuser -u badger -- /usr/bin/badger --test -f /etc/badger/config.json > target/package-test.json
grep -q '"cpu.user"' target/package-test.json || fail "--test as badger printed no cpu stats"
systemd-analyze verify /lib/systemd/system/badger.service
$SUDO dpkg -P badger
[ ! -e /usr/bin/badger ] || fail "/usr/bin/badger left after purge"
[ ! -e /etc/badger/config.json ] || fail "/etc/badger/config.json left after purge"

echo "==> .rpm: metadata, file list, scratch-root install"
rpm -qip "$RPM" > target/rpm-info.txt
grep -q "^Name *: badger" target/rpm-info.txt || fail "rpm metadata"
rpm -qlp "$RPM" > target/rpm-files.txt
for f in /usr/bin/badger /etc/badger/config.json /etc/badger/conf.d/cpu.conf /usr/lib/systemd/system/badger.service \
         /usr/share/man/man1/badger.1.gz /usr/lib/badger/modules/README; do
    grep -qx "$f" target/rpm-files.txt || fail "rpm lacks $f"
done
rpm -qp --configfiles "$RPM" > target/rpm-configfiles.txt
grep -qx /etc/badger/config.json target/rpm-configfiles.txt || fail "rpm config.json is not %config"
ROOT=$(mktemp -d)
rpm --root "$ROOT" --initdb
rpm -i --nodeps --noscripts --root "$ROOT" "$RPM"
"$ROOT/usr/bin/badger" --version
rpm --root "$ROOT" -V --nodeps badger
rm -rf "$ROOT"
echo "package test: ok"
