#!/usr/bin/env bash
# The GPU tests in one command, on a GPU machine that has python3 + PyTorch but no Node.js or CRIU:
# unpacks what scripts/gpu/pack.sh put in .device/gpu (node, criu 4.1.1 + its libraries, the bundled
# proof), checks the tools, then runs the proof for KYBERNATE_GPU_GIB (default 2,16).
# Usage: tests/gpu/run.sh [OUTPUT_DIR]   (results: OUTPUT_DIR/gpu-results.json, logs beside it)
# KYBERNATE_GPU_RUN: a comma list of proof (process level, the default), investigate (docs/gpu.md) and
# container (the container-level proof through the agent and a private containerd: results in
# OUTPUT_DIR/gpu-container-results.json, containerd's and the agent's logs beside it); both = proof,investigate.
# store-io (the agent store's hash and fsync rates; KYBERNATE_GPU_STORE_IO_FILE: a file of >= 4 GiB to hash).
# KYBERNATE_GPU_STORE_DIR: the agent store of the container mode (default under the work dir; e.g. on /dev/shm).
# KYBERNATE_GPU_DRY_RUN=1 runs the container mode without a GPU (CPU stand-in workload, no CUDA calls).
# KYBERNATE_GPU_THP=always|madvise|never sets transparent huge pages for every mode (restored after).
# KYBERNATE_GPU_WARM_GIB=N first writes N GiB to /dev/shm and frees it: a VM whose memory the host backs on
# first touch (the device tool's machines) is slow the first time memory is used, which real nodes are not.
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
with tarfile.open(f"{pack}/stack.tar.xz") as tar:
    tar.extractall(f"{runtime}/stack", filter="fully_trusted")
PY
chmod +x "$runtime/node" "$runtime/criu/criu"
# Trixie's criu needs glibc >= 2.38 (the host's) and libraries the host lacks (carried, found first).
cat > "$runtime/criu.sh" <<SH
#!/bin/sh
LD_LIBRARY_PATH=$runtime/criu/lib exec $runtime/criu/criu "\$@"
SH
chmod +x "$runtime/criu.sh"
# The layout the containerd test harness expects under $KYBERNATE_CACHE (tests/harness/containerd/stack.ts).
stack=$runtime/cache/containerd
mkdir -p "$stack/bin" "$stack/image"
for tool in containerd containerd-shim-runc-v2 ctr runc; do mv -f "$runtime/stack/$tool" "$stack/bin/"; done
mv -f "$runtime/stack/busybox" "$stack/image/"
# A dry run on the development machine (glibc 2.36, where trixie's criu cannot run) takes the CRIU built there.
criu_for_runc=$runtime/criu.sh
"$criu_for_runc" --version >/dev/null 2>&1 || criu_for_runc=${KYBERNATE_CACHE:-$PWD/.cache}/containerd/bin/criu
cp "$criu_for_runc" "$stack/bin/criu"

{
  echo "== tools"
  "$runtime/node" --version
  "$runtime/criu.sh" --version
  "$runtime/criu.sh" check 2>&1 | tail -3
  nvidia-smi --query-gpu=name,uuid,driver_version,memory.used,memory.total --format=csv
  grep -E 'MemTotal|MemAvailable' /proc/meminfo
  df -h /var/tmp | tail -1
  "$stack/bin/containerd" --version
  "$stack/bin/runc" --version | head -1
  ldd "$stack/bin/runc" | grep -E 'seccomp|not found'
} 2>&1 | tee "$out/tools.log"

thp_file=/sys/kernel/mm/transparent_hugepage/enabled
if [ -n "${KYBERNATE_GPU_THP:-}" ]; then
  thp_before=$(sed -E 's/.*\[([a-z]+)\].*/\1/' "$thp_file")
  echo "$KYBERNATE_GPU_THP" > "$thp_file"
  trap 'echo "$thp_before" > "$thp_file"' EXIT
fi
if [ "${KYBERNATE_GPU_WARM_GIB:-0}" -gt 0 ]; then
  started=$(date +%s%N)
  for i in $(seq 1 8); do
    dd if=/dev/zero of="/dev/shm/kybernate-warm-$i" bs=1M count=$(( KYBERNATE_GPU_WARM_GIB * 128 )) status=none &
  done
  wait
  rm -f /dev/shm/kybernate-warm-*
  echo "warmed ${KYBERNATE_GPU_WARM_GIB} GiB of memory in $(( ($(date +%s%N) - started) / 1000000 )) ms" | tee -a "$out/tools.log"
fi

mode=${KYBERNATE_GPU_RUN:-proof}
[ "$mode" = both ] && mode=proof,investigate
runs() { [[ ",$mode," == *",$1,"* ]]; }
status=0
if runs container; then
  echo "== container proof"
  KYBERNATE_CACHE=$runtime/cache "$runtime/node" "$pack/agent/run-container-proof.mjs" --gib "${KYBERNATE_GPU_GIB:-2,16}" \
    --out "$out/gpu-container-results.json" ${KYBERNATE_GPU_STORE_DIR:+--store-dir "$KYBERNATE_GPU_STORE_DIR"} --python "$(command -v python3)" --workload tests/gpu/workload.py \
    ${KYBERNATE_GPU_DRY_RUN:+--dry-run} 2>&1 | tee "$out/container-proof.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if runs proof; then
  echo "== proof"
  "$runtime/node" "$pack/run-proof.mjs" --gib "${KYBERNATE_GPU_GIB:-2,16}" ${KYBERNATE_GPU_THP:+--thp "$KYBERNATE_GPU_THP"} \
    --out "$out/gpu-results.json" \
    --criu "$runtime/criu.sh" --python python3 --workload tests/gpu/workload.py 2>&1 | tee "$out/proof.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if runs store-io; then
  echo "== store io"
  "$runtime/node" "$pack/store-io.mjs" --out "$out/gpu-store-io.json" \
    ${KYBERNATE_GPU_STORE_IO_FILE:+--file "$KYBERNATE_GPU_STORE_IO_FILE"} 2>&1 | tee "$out/store-io.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if runs investigate; then
  echo "== investigation"
  "$runtime/node" "$pack/investigate.mjs" --out "$out/gpu-investigation.json" 2>&1 | tee "$out/investigate.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
# CRIU's own logs of the last attempt, for when a dump or restore failed.
for f in /var/tmp/kybernate-gpu/criu-images/dump.log /var/tmp/kybernate-gpu/criu-images/restore.log; do
  [ -f "$f" ] && tail -c 200000 "$f" > "$out/criu-$(basename "$f")"
done
exit "$status"
