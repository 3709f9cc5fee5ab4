#!/usr/bin/env bash
# Installs a .deb built by scripts/package.sh with dpkg -i, checks what it put
# where and that the installed binary runs, then removes it and checks that
# nothing is left. Needs root (CI runs as root).
#   scripts/check-deb.sh dist/runnerd_VERSION_ARCH.deb
set -euo pipefail
deb=$1
fail() { echo "check-deb: $*" >&2; exit 1; }
(cd "$(dirname "$deb")" && sha256sum -c "$(basename "$deb").sha256" >/dev/null) || fail "checksum does not match"
version=$(dpkg-deb -f "$deb" Version)
dpkg -i "$deb" >/dev/null
for f in /usr/bin/runnerd /usr/bin/runnerctl /lib/systemd/system/runnerd.service \
         /usr/share/doc/runnerd/jobs.host.toml /usr/share/doc/runnerd/jobs.example.toml; do
  [ -e "$f" ] || fail "$f not installed"
done
[ -x /usr/bin/runnerctl ] || fail "runnerctl is not executable"
grep -q '^ExecStart=/usr/bin/runnerd serve ' /lib/systemd/system/runnerd.service || fail "the unit does not start /usr/bin/runnerd"
out=$(/usr/bin/runnerd version)
case $out in "runnerd $version "*) ;; *) fail "runnerd version says '$out'; want version $version" ;; esac
RUNNERD_PASSWORD=x /usr/bin/runnerd validate -config /usr/share/doc/runnerd/jobs.host.toml >/dev/null \
  || fail "the packaged host example does not validate"
echo "check-deb: $deb installed: $out"
dpkg -r runnerd >/dev/null
for f in /usr/bin/runnerd /usr/bin/runnerctl /lib/systemd/system/runnerd.service; do
  [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
echo "check-deb: removed cleanly"
