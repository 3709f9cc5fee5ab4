#!/usr/bin/env bash
# scripts/bench.sh — runnerd's benchmark suite in one command (issue 10; figures in BENCHMARKS.md).
#
# Runs every Go benchmark (go test -run='^$' -bench=. -benchmem) over the packages with a -benchtime
# chosen per package so the whole run stays within about 10 minutes on 2 cores, then the daemon-level
# measurements (go test ./cmd/runnerd/ -run='^TestPerf$' -perf=true: a real runnerd binary as a child process
# against the simulator on 127.0.0.1 — idle RSS/CPU with 10 and 1,000 jobs, start-up to READY=1,
# 10k vs 100k-record export RSS and CPU, calls per deployment and per execution).
# Everything goes to bench-out/DATE.txt, headed by the machine: date, uname -a, nproc, the CPU model,
# go version, uptime (load average) — benchmarks are measured on shared machines; compare ratios,
# allocations and CPU time rather than lone ns/op.
#
# Usage: scripts/bench.sh [-quick] [-count N] [-profile] [-real]
#   -quick    -short everywhere (skips the 10M-row ledgers and the 1M-record audit query), perf with a
#             10 s idle window, whole commands on 10^4 and 10^6-row ledgers (the full run adds 10^7)
#   -count N  repeat each benchmark N times (default 1; use 5 and benchstat to compare two runs)
#   -real     rate utilisation at the issue's rate 5 with 500 calls per case (adds ~5 minutes)
#   -profile  also write CPU and memory profiles of the export path and the page decoding to
#             bench-out/DATE-*.prof (inspect with: go tool pprof -top bench-out/DATE-export.cpu.prof)
# Then the commands an operator runs, as whole processes (TestPerfCommands): wall and CPU of budget, plan,
# history, calls -limit 50 and serve to READY=1 on each ledger size, side by side with the ratio. The
# ledgers are built once per schema version and kept in $BENCH_OUT/ledgers (10^7 rows: ~2 GB, a few minutes).
# Environment: BENCH_OUT (default bench-out), BENCH_PKGS (restrict to these packages, space separated).
# Exit: 0 all ran; 1 a benchmark or measurement failed (the output file says which); 2 usage error.
set -uo pipefail

cd "$(dirname "$0")/.."
quick=0 count=1 profile=0 real=0
while [ $# -gt 0 ]; do
  case "$1" in
    -quick) quick=1 ;;
    -count) shift; count=${1:?-count needs a number} ;;
    -profile) profile=1 ;;
    -real) real=1 ;;
    -h|-help|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

outdir=${BENCH_OUT:-bench-out}
mkdir -p "$outdir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$outdir/$stamp.txt"
short=()
[ "$quick" = 1 ] && short=(-short)

{
  echo "# runnerd benchmarks $stamp"
  echo "# date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "# uname:   $(uname -a)"
  echo "# nproc:   $(nproc)"
  echo "# cpu:     $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  echo "# go:      $(go version)"
  echo "# uptime:  $(uptime)"
} | tee "$out"

status=0
# bench PKG REGEX BENCHTIME [test flags...]: one package's benchmarks matching REGEX, with the load
# before and after. The package comes first so that go test passes the custom flags to the binary.
bench() {
  local pkg=$1 re=$2 bt=$3
  shift 3
  if [ -n "${BENCH_PKGS:-}" ] && ! [[ " $BENCH_PKGS " == *" $pkg "* ]]; then
    return
  fi
  echo "## $pkg -bench='$re' -benchtime=$bt $* load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  if ! go test "$pkg" -run='^$' -bench="$re" -benchmem -benchtime="$bt" -count="$count" -timeout=30m "${short[@]}" "$@" 2>&1 | tee -a "$out"; then
    status=1
  fi
  echo "## load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
}

# Time-boxed micro-benchmarks run for -benchtime=1s; the fixed-work ones (Nx) do a set amount of work.
bench ./internal/atomapi/ . 1s
bench ./internal/atomapi/atomsim/ . 1s
bench ./internal/store/ . 1s                        # BeginEnd, HourlyUsage and LedgerScaling at 10^4 and 10^7 rows, ListAudit (1M)
bench ./internal/budget/ '^Benchmark(Admit|Plan|GateWait|RateLimiterReserve)$' 1s
bench ./internal/budget/ '^BenchmarkBudgetYield$' 1x  # three simulated days
if [ "$real" = 1 ]; then                            # the issue's figure: rate 5, 500 calls per case (~5 minutes)
  bench ./internal/budget/ '^BenchmarkRateUtilisation$/^(gate|unpaced)$/^10$' 500x -budget.real=true
  bench ./internal/budget/ '^BenchmarkRateUtilisation$/^sleep$/^1$' 500x -budget.real=true
else                                                # rate 20, 200 calls per case (~1 minute)
  bench ./internal/budget/ '^BenchmarkRateUtilisation$' 200x
fi
bench ./internal/scheduler/ . 1s
bench ./internal/scheduler/kinds/ . 1x              # PollerVsFixed (20 executions), Export100k, ExportSink

if [ "$profile" = 1 ]; then
  echo "## profiles" | tee -a "$out"
  go test ./internal/scheduler/kinds/ -run='^$' -bench='ExportSink' -benchtime=1x -cpuprofile "$outdir/$stamp-export.cpu.prof" \
    -memprofile "$outdir/$stamp-export.mem.prof" -o "$outdir/$stamp-kinds.test" 2>&1 | tee -a "$out" || status=1
  go test ./internal/atomapi/ -run='^$' -bench='ExportPage/fast|DecodeQueryPage' -cpuprofile "$outdir/$stamp-decode.cpu.prof" \
    -memprofile "$outdir/$stamp-decode.mem.prof" -o "$outdir/$stamp-atomapi.test" 2>&1 | tee -a "$out" || status=1
  for p in export decode; do
    bin="$outdir/$stamp-kinds.test"; [ "$p" = decode ] && bin="$outdir/$stamp-atomapi.test"
    echo "### pprof -top $p cpu" | tee -a "$out"
    go tool pprof -top -nodecount=25 "$bin" "$outdir/$stamp-$p.cpu.prof" 2>/dev/null | tee -a "$out"
    echo "### pprof -top $p alloc_space" | tee -a "$out"
    go tool pprof -sample_index=alloc_space -top -nodecount=15 "$bin" "$outdir/$stamp-$p.mem.prof" 2>/dev/null | tee -a "$out"
  done
fi

if [ -z "${BENCH_PKGS:-}" ] || [[ " $BENCH_PKGS " == *" ./cmd/runnerd/ "* ]]; then
  idle=30s
  [ "$quick" = 1 ] && idle=10s
  echo "## ./cmd/runnerd/ TestPerf (-perf-idle=$idle) load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  if ! go test ./cmd/runnerd/ -count=1 -run='^TestPerf$' -v -timeout 20m -perf=true -perf-idle="$idle" 2>&1 |
    grep -E 'perf:|^(---|===|ok|FAIL|PASS)|_test.go' | tee -a "$out"; then
    status=1
  fi
  echo "## load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
fi

if [ -z "${BENCH_PKGS:-}" ] || [[ " $BENCH_PKGS " == *" ./cmd/runnerd/ "* ]]; then
  ledgers=10000,1000000,10000000
  [ "$quick" = 1 ] && ledgers=10000,1000000
  echo "## ./cmd/runnerd/ TestPerfCommands (-perf-ledgers=$ledgers) load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  if ! go test ./cmd/runnerd/ -count=1 -run='^TestPerfCommands$' -v -timeout 60m -perf=true -perf-ledgers="$ledgers" \
    -perf-cache="$outdir/ledgers" 2>&1 | grep -E 'perf:|^(---|===|ok|FAIL|PASS)|_test.go' | tee -a "$out"; then
    status=1
  fi
  echo "## load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
fi

echo "# end $(date -u '+%H:%M:%S UTC') uptime: $(uptime)" | tee -a "$out"
echo "bench.sh: wrote $out" >&2
exit $status
