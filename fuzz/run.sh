#!/usr/bin/env bash
# Fuzz one target for a while and record what it did:
#   fuzz/run.sh TARGET SECONDS
# Seeds: fuzz/seeds.py (run it first). Crashes, hangs (-timeout=5 s) and inputs over 512 MiB
# of RSS land in fuzz/artifacts/TARGET/. The line appended to fuzz/runs.log gives target,
# seconds, execs, corpus size and the artifacts found (figures for the README).
set -euo pipefail
cd "$(dirname "$0")"
target=$1
secs=${2:-600}
mkdir -p corpus/"$target" artifacts/"$target" logs
log=logs/$target-$(date +%Y%m%d-%H%M%S).log
before=$(ls artifacts/"$target" | wc -l)
# -s none: safe Rust needs no ASan, and it runs 2-3x faster; --debug-assertions turns on
# overflow checks and debug_assert! (release builds of modelgate run without them).
cargo +nightly fuzz run "$target" --sanitizer none --debug-assertions -- \
    -timeout=5 -rss_limit_mb=512 -max_len=262144 -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix=artifacts/"$target"/ >"$log" 2>&1 || true
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
corpus=$(ls corpus/"$target" | wc -l)
after=$(ls artifacts/"$target" | wc -l)
echo "$(date -u +%FT%TZ) $target seconds=$secs execs=${execs:-?} corpus=$corpus new_artifacts=$((after - before)) log=$log" | tee -a runs.log
