#!/usr/bin/env bash
# The differential oracle's long run: many more cases than `cargo test` runs, a fresh seed each
# time unless given, the known disagreements (tests/differential/known.json) included.
#   bench/oracle.sh [CASES] [SEED]     (defaults: 20000, the current time)
# Prints cases tried, loader outcomes, modelgate's verdicts and the disagreements by class with
# a minimised reproducer each; the JSON report and the reproducers go to bench/out/oracle-SEED/.
# Loaders: /opt/mg-venv (numpy, joblib, h5py; .ci/run makes it) and /usr/bin/python3 with
# Debian's python3-torch; MG_ORACLE_PYTHON / MG_TORCH_PYTHON name others.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-20000}
seed=${2:-$(date +%s)}
python=${MG_ORACLE_PYTHON:-/opt/mg-venv/bin/python}
torch=${MG_TORCH_PYTHON:-/usr/bin/python3}
cargo build --release --quiet
out=bench/out/oracle-$seed
mkdir -p "$out"
"$python" tests/differential/oracle.py --modelgate target/release/modelgate --torch-python "$torch" \
    --seed "$seed" --cases "$cases" --minimize 60 --keep "$out" --json "$out/report.json" || true
echo "report: $out/report.json"
