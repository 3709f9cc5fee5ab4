#!/usr/bin/env bash
# Builds a Debian package of runnerd with dpkg-deb, into dist/:
#   /usr/bin/runnerd                      the binary, with its version and commit
#   /usr/bin/runnerctl                    the CLI as the service's user (README)
#   /lib/systemd/system/runnerd.service   the unit, ExecStart at /usr/bin/runnerd
#   /usr/share/doc/runnerd/               jobs.host.toml (start here), jobs.example.toml (every key), README.md
# and dist/runnerd_VERSION_ARCH.deb.sha256. The service is not enabled or started: the configuration and the
# secret come first (README, "Install on a host").
#   VERSION=1.2.3 scripts/package.sh      (default: from git describe)
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1

# A release tag (v1.2.3 → 1.2.3); without one, 0.0.0~git<commit>, which sorts before any release.
if [ -n "${VERSION:-}" ]; then
  version=$VERSION
elif tag=$(git describe --tags 2>/dev/null); then
  version=${tag#v}
else
  version="0.0.0~git$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
fi
case $version in [0-9]*) ;; *) echo "package: version '$version' does not start with a digit" >&2; exit 1 ;; esac
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
arch=$(dpkg --print-architecture)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/runnerd"
go build -trimpath -ldflags "-X main.version=$version -X main.commit=$commit" -o "$root/usr/bin/runnerd" ./cmd/runnerd
install -D -m 0755 scripts/runnerctl "$root/usr/bin/runnerctl"
install -d "$root/lib/systemd/system"
sed -e 's#/usr/local/bin/runnerd#/usr/bin/runnerd#g' systemd/runnerd.service > "$root/lib/systemd/system/runnerd.service"
chmod 0644 "$root/lib/systemd/system/runnerd.service"
install -D -m 0644 systemd/jobs.host.toml "$root/usr/share/doc/runnerd/jobs.host.toml"
install -D -m 0644 jobs.example.toml "$root/usr/share/doc/runnerd/jobs.example.toml"
install -D -m 0644 README.md "$root/usr/share/doc/runnerd/README.md"

install -d "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: runnerd
Version: $version
Architecture: $arch
Maintainer: runnerd maintainers <runnerd@example.com>
Installed-Size: $size
Depends: libc6, systemd
Section: admin
Priority: optional
Description: scheduled Boomi AtomSphere chores within the account's API budget
 runnerd runs execute, deploy and export jobs on cron schedules, records every
 API call in a SQLite ledger before it is sent, and keeps the whole account
 inside its rolling 24-hour allowance and its rate.
CONTROL
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTINST
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"

mkdir -p dist
deb="dist/runnerd_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
(cd dist && sha256sum "$(basename "$deb")" > "$(basename "$deb").sha256")
echo "$deb"
