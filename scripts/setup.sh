#!/usr/bin/env bash
# Installs and builds everything the test tiers need, on a fresh Debian 12 machine (as root), cached
# under .cache/ so that a warm rerun does not rebuild. Each step is one idempotent script in
# scripts/setup/, run in name order. `npm test` runs this first (npm's pretest).
set -euo pipefail
cd "$(dirname "$0")/.."
export KYBERNATE_CACHE="${KYBERNATE_CACHE:-$PWD/.cache}"
mkdir -p "$KYBERNATE_CACHE"
for step in scripts/setup/*.sh; do
  [ -e "$step" ] || continue
  start=$(date +%s)
  bash "$step"
  echo "setup: $(basename "$step") done in $(( $(date +%s) - start )) s"
done
