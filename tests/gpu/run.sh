#!/usr/bin/env bash
# The GPU tests in one command, on a GPU machine that has python3 + PyTorch but no Node.js or CRIU:
# unpacks what scripts/gpu/pack.sh put in .device/gpu (node, criu 4.1.1 + its libraries, the bundled
# proof), checks the tools, then runs the proof for KYBERNATE_GPU_GIB (default 2,16).
# Usage: tests/gpu/run.sh [OUTPUT_DIR]   (results: OUTPUT_DIR/gpu-results.json, logs beside it)
# KYBERNATE_GPU_RUN=investigate runs tests/gpu/investigate.ts instead (docs/gpu.md), =both runs both.
# KYBERNATE_GPU_THP=always|madvise|never sets transparent huge pages for the proof (restored after).
set -uo pipefail
cd "$(dirname "$0")/../.."
pack=${KYBERNATE_GPU_PACK:-.device/gpu}
out=${1:-${OUT:-/tmp/kybernate-gpu-out}}
runtime=/tmp/kybernate-gpu-runtime
mkdir -p "$out" "$runtime/criu"
[ -s "$pack/run-proof.mjs" ] || { echo "no $pack/run-proof.mjs: run scripts/gpu/pack.sh first" >&2; exit 2; }

python3 - "$pack" "$runtime" <<'PY' || exit 2
import lzma, shutil, sys, tarfile
pack, runtime = sys.argv[1], sys.argv[2]
with lzma.open(f"{pack}/node.xz") as src, open(f"{runtime}/node", "wb") as dst:
    shutil.copyfileobj(src, dst)
with tarfile.open(f"{pack}/criu.tar.xz") as tar:
    tar.extractall(f"{runtime}/criu", filter="fully_trusted")
PY
chmod +x "$runtime/node" "$runtime/criu/criu"
# Trixie's criu needs glibc >= 2.38 (the host's) and libraries the host lacks (carried, found first).
cat > "$runtime/criu.sh" <<SH
#!/bin/sh
LD_LIBRARY_PATH=$runtime/criu/lib exec $runtime/criu/criu "\$@"
SH
chmod +x "$runtime/criu.sh"

{
  echo "== tools"
  "$runtime/node" --version
  "$runtime/criu.sh" --version
  "$runtime/criu.sh" check 2>&1 | tail -3
  nvidia-smi --query-gpu=name,uuid,driver_version,memory.used,memory.total --format=csv
  grep -E 'MemTotal|MemAvailable' /proc/meminfo
  df -h /var/tmp | tail -1
} 2>&1 | tee "$out/tools.log"

mode=${KYBERNATE_GPU_RUN:-proof}
status=0
if [ "$mode" != investigate ]; then
  echo "== proof"
  "$runtime/node" "$pack/run-proof.mjs" --gib "${KYBERNATE_GPU_GIB:-2,16}" ${KYBERNATE_GPU_THP:+--thp "$KYBERNATE_GPU_THP"} \
    --out "$out/gpu-results.json" \
    --criu "$runtime/criu.sh" --python python3 --workload tests/gpu/workload.py 2>&1 | tee "$out/proof.log"
  status=${PIPESTATUS[0]}
fi
if [ "$mode" != proof ]; then
  echo "== investigation"
  "$runtime/node" "$pack/investigate.mjs" --out "$out/gpu-investigation.json" 2>&1 | tee "$out/investigate.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
# CRIU's own logs of the last attempt, for when a dump or restore failed.
for f in /var/tmp/kybernate-gpu/criu-images/dump.log /var/tmp/kybernate-gpu/criu-images/restore.log; do
  [ -f "$f" ] && tail -c 200000 "$f" > "$out/criu-$(basename "$f")"
done
exit "$status"
