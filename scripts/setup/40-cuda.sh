#!/usr/bin/env bash
# tests/cuda builds a test double of libcuda.so.1 (tests/cuda/fake-libcuda.c) with the C compiler.
set -euo pipefail
command -v cc >/dev/null && exit 0
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq gcc libc6-dev
