#!/usr/bin/env bash
# Checks systemd/runnerd.service against a built runnerd binary:
#   1. systemd-analyze security --offline=yes --threshold=15  (exposure must be 1.5 or below)
#   2. systemd-analyze verify                                 (must print nothing)
# Both run on a temporary copy of the unit whose ExecStart points at the given binary, because verify
# checks that the executable exists. Builds nothing itself.
#
# Usage: scripts/check-systemd.sh PATH/TO/runnerd
# Exit: 0 both checks pass (or systemd-analyze is not installed: skipped with a message); 1 a check failed;
#       2 usage error.
set -euo pipefail

unit_src="$(cd "$(dirname "$0")/.." && pwd)/systemd/runnerd.service"
threshold=15 # tenths: 15 = exposure 1.5

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH/TO/runnerd" >&2
  exit 2
fi
bin=$1
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
  echo "check-systemd: $bin is not an executable file (build it first: go build -o $bin ./cmd/runnerd)" >&2
  exit 2
fi
if [ ! -f "$unit_src" ]; then
  echo "check-systemd: $unit_src not found" >&2
  exit 1
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "check-systemd: systemd-analyze not installed; skipping the unit checks"
  exit 0
fi
echo "check-systemd: $(systemd-analyze --version | head -n1)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unit="$tmp/runnerd.service"
# Replace the binary path of ExecStart only; the rest of the unit is checked as shipped.
sed "s#^ExecStart=/usr/local/bin/runnerd #ExecStart=$bin #" "$unit_src" >"$unit"
if ! grep -q "^ExecStart=$bin " "$unit"; then
  echo "check-systemd: could not point ExecStart at $bin (does the unit still start /usr/local/bin/runnerd?)" >&2
  exit 1
fi

status=0

# 1. Exposure score. --threshold makes systemd-analyze exit non-zero above 1.5.
if out=$(systemd-analyze security --offline=yes --threshold="$threshold" "$unit" 2>&1); then
  echo "check-systemd: security: $(printf '%s\n' "$out" | grep 'Overall exposure level' | sed 's/^→ *//')"
else
  printf '%s\n' "$out"
  echo "check-systemd: FAIL: systemd-analyze security exposure above $((threshold / 10)).$((threshold % 10))" >&2
  status=1
fi

# 2. verify must succeed and print nothing at all (warnings count as failures).
if out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ]; then
  echo "check-systemd: verify: clean"
else
  printf '%s\n' "$out"
  echo "check-systemd: FAIL: systemd-analyze verify printed the above" >&2
  status=1
fi

exit "$status"
