#!/usr/bin/env bash
# Packs what the GPU machine lacks into .device/gpu/ (git-ignored; name it in the device tool's `carry`):
#   node.xz         this machine's node binary, xz -9 (~24 MB); cached per node version
#   criu.tar.xz     Debian trixie's criu 4.1.1 + the libraries it needs beyond glibc (the GPU machine has
#                   glibc 2.39 >= the 2.38 trixie needs; bookworm's criu 3.17 fails on kernel 6.18)
#   *.mjs           tests/gpu/run-proof.ts, investigate.ts and store-io.ts bundled with esbuild (koffi stays external:
#                   a native addon)
#   stack.tar.xz    the container stack scripts/setup/30-containerd.sh built (containerd 1.7.24 + shim +
#                   ctr: static Go; runc 1.3.7: needs libseccomp.so.2, which Ubuntu 24.04 has) and the
#                   busybox of the test image; xz -9 single-threaded so ctr/shim share containerd's dictionary
#   agent/*.mjs     tests/gpu/run-container-proof.ts (the agent, harness and proof) bundled three levels
#                   deep, so that its import.meta.url-relative paths (proto/, images/) reach the repository
#   node_modules/   koffi and its linux-x64 prebuilt addon only
# Downloads and compression are cached under $KYBERNATE_CACHE/gpu; a warm rerun takes seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${KYBERNATE_CACHE:-$PWD/.cache}/gpu"
pack=.device/gpu
mkdir -p "$cache" "$pack"
grep -qxF '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude

node_xz="$cache/node-$(node --version).xz"
if [ ! -s "$node_xz" ]; then
  xz -9 -T2 -c "$(command -v node)" > "$node_xz.tmp" && mv "$node_xz.tmp" "$node_xz"
fi
cp "$node_xz" "$pack/node.xz"

criu_tar="$cache/criu-4.1.1-trixie.tar.xz"
if [ ! -s "$criu_tar" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # The machine's own Debian mirror (FACTS.md: trixie is reachable through it).
  mirror=$(grep -hE '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2; exit}' || true)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} trixie main" > "$work/trixie.list"
  mkdir -p "$work/lists/partial" "$work/debs" "$work/root" "$work/criu/lib"
  apt_opts=(-o Dir::Etc::SourceList="$work/trixie.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$work/lists" -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
    -o APT::Architecture=amd64 -o APT::Architectures=amd64)
  apt-get "${apt_opts[@]}" update -qq
  # criu's dependency closure without glibc/libgcc, which the GPU machine's own (newer) ones replace.
  mapfile -t packages < <(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends criu \
    | grep -v '^ ' | grep -v '<' | grep -vxE 'libc6|libgcc-s1|gcc-[0-9]+-base' | sort -u)
  (cd "$work/debs" && apt-get "${apt_opts[@]}" download "${packages[@]}" -qq)
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
  cp "$work/root/usr/sbin/criu" "$work/criu/criu"
  cp -a "$work"/root/usr/lib/x86_64-linux-gnu/*.so* "$work/criu/lib/"
  tar -C "$work/criu" -cJf "$criu_tar.tmp" . && mv "$criu_tar.tmp" "$criu_tar"
fi
cp "$criu_tar" "$pack/criu.tar.xz"

stack_dir="${KYBERNATE_CACHE:-$PWD/.cache}/containerd"
stack_files=(bin/containerd bin/containerd-shim-runc-v2 bin/ctr bin/runc image/busybox)
stack_key=$(cd "$stack_dir" && cat "${stack_files[@]}" | sha256sum | cut -c1-16)
stack_tar="$cache/stack-$stack_key.tar.xz"
if [ ! -s "$stack_tar" ]; then
  stack_work=$(mktemp -d)
  for f in "${stack_files[@]}"; do strip -o "$stack_work/$(basename "$f")" "$stack_dir/$f"; done
  tar -C "$stack_work" -cf - containerd ctr containerd-shim-runc-v2 runc busybox | xz -9 -T1 > "$stack_tar.tmp" && mv "$stack_tar.tmp" "$stack_tar"
  rm -rf "$stack_work"
fi
cp "$stack_tar" "$pack/stack.tar.xz"

bundle() {
  npx esbuild "$1" --bundle --platform=node --format=esm --target=node20 \
    --external:koffi --log-level=warning --outfile="$2" \
    --banner:js="import { createRequire as kybernateBundleRequire } from 'node:module'; const require = kybernateBundleRequire(import.meta.url);"
}
for entry in run-proof investigate store-io; do bundle "tests/gpu/$entry.ts" "$pack/$entry.mjs"; done
mkdir -p "$pack/agent"
bundle tests/gpu/run-container-proof.ts "$pack/agent/run-container-proof.mjs"
rm -rf "$pack/node_modules"
mkdir -p "$pack/node_modules/@koromix/koffi-linux-x64"
cp -a node_modules/koffi "$pack/node_modules/"
rm -rf "$pack/node_modules/koffi/"{doc,vendor}
cp -a node_modules/@koromix/koffi-linux-x64/{package.json,index.js,linux_x64} "$pack/node_modules/@koromix/koffi-linux-x64/"
du -sh "$pack"
