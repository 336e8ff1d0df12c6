#!/usr/bin/env bash
# Fuzz one target for a while and record what it did:
#   fuzz/run.sh build              # once: every target, nightly, no sanitizer, debug assertions
#   fuzz/run.sh TARGET SECONDS
# Seeds: fuzz/seeds.py (run it first). Crashes, hangs (-timeout=5 s) and inputs over 512 MiB
# of RSS land in fuzz/artifacts/TARGET/. The line appended to fuzz/runs.log gives target,
# seconds, execs, corpus size and the artifacts found (figures for the README).
set -euo pipefail
cd "$(dirname "$0")"
target=$1
if [[ "$target" == build ]]; then
    # -s none: safe Rust needs no ASan, and it runs 2-3x faster; --debug-assertions turns on
    # overflow checks and debug_assert! (release builds of modelgate run without them).
    CARGO_INCREMENTAL=0 exec cargo +nightly fuzz build --sanitizer none --debug-assertions
fi
secs=${2:-600}
bin=target/x86_64-unknown-linux-gnu/release/$target
[[ -x "$bin" ]] || { echo "build first: fuzz/run.sh build" >&2; exit 2; }
mkdir -p corpus/"$target" artifacts/"$target" logs
log=logs/$target-$(date +%Y%m%d-%H%M%S).log
before=$(ls artifacts/"$target" | wc -l)
"$bin" corpus/"$target" -timeout=5 -rss_limit_mb=512 -max_len=262144 -max_total_time="$secs" \
    -print_final_stats=1 -artifact_prefix=artifacts/"$target"/ >"$log" 2>&1 || true
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
corpus=$(ls corpus/"$target" | wc -l)
after=$(ls artifacts/"$target" | wc -l)
echo "$(date -u +%FT%TZ) $target seconds=$secs execs=${execs:-?} corpus=$corpus new_artifacts=$((after - before)) log=$log" | tee -a runs.log
