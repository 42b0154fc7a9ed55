#!/usr/bin/env bash
# The containerd/CRIU test tier's stack (tests/harness/containerd): containerd 1.7 + containerd-shim-runc-v2
# + ctr unpacked from Debian trixie, runc built from the Go module pinned in tools/runc, CRIU 4.x built from
# trixie's source, and busybox-static for the test image. Everything lands in $KYBERNATE_CACHE/containerd/bin
# (busybox in .../image); each piece has a key file, so a warm rerun downloads and builds nothing.
# Why not bookworm's own packages: criu 3.17 fails on this kernel (vDSO), containerd 1.6 breaks repeated
# checkpoints, and trixie's runc binary needs glibc 2.38 (see shared FACTS.md and docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
CACHE="${KYBERNATE_CACHE:-$REPO/.cache}"
STACK="$CACHE/containerd"
BIN="$STACK/bin"
APT_DIR="$STACK/apt-trixie"
mkdir -p "$BIN" "$STACK/image"

CONTAINERD_SERIES='1.7.'
CRIU_SERIES='4.'
# Build deps of CRIU and runc (cgo + seccomp), runtime libraries of CRIU, `ip netns` for the tests that
# restore into an existing network namespace, xz and patch for the CRIU tarball and our patches.
HOST_PACKAGES=(
  build-essential pkg-config xz-utils patch iproute2 libseccomp-dev
  libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler libnl-3-dev libnet1-dev libcap-dev libbsd-dev
  libgnutls28-dev libnftables-dev uuid-dev python3-protobuf
)

log() { echo "setup/30-containerd: $*"; }
fail() { echo "setup/30-containerd: $*" >&2; exit 1; }

install_host_packages() {
  local missing=() pkg
  for pkg in "${HOST_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then missing+=("$pkg"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "apt-get install ${missing[*]}"
  local apt_install=(apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600)
  # The machine's package lists may be missing or stale on a fresh machine: update once and retry.
  if ! DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" "${missing[@]}"; then
    apt-get -qq -o DPkg::Lock::Timeout=600 update
    DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" "${missing[@]}"
  fi
}

# The machine's own Debian mirror (deb822 .sources or one-line sources.list), never a hard-coded host.
debian_mirror() {
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-(security|updates|backports)$/) { print uri; exit } }')"
  if [ -z "$uri" ]; then
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '
        $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) !~ /-(security|updates|backports)$/) { print $i; exit } } }')"
  fi
  [ -n "$uri" ] || fail "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/"
  echo "$uri"
}

# A private sources list, package lists and cache for trixie: the machine's own apt state stays untouched.
TRIXIE_APT=(
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
  -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
  -o Acquire::IndexTargets::deb-src::Contents-dsc::DefaultEnabled=false
  -o APT::Sandbox::User=root -o DPkg::Lock::Timeout=600
)
TRIXIE_UPDATED=false
trixie_update() {
  $TRIXIE_UPDATED && return
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs" "$APT_DIR/src"
  local mirror
  mirror="$(debian_mirror)"
  cat > "$APT_DIR/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
EOF
  log "updating trixie package lists from $mirror"
  apt-get "${TRIXIE_APT[@]}" -qq update
  TRIXIE_UPDATED=true
}

# The first Version: of `apt-cache show|showsrc PACKAGE` in the trixie lists. awk reads to the end: exiting
# at the first match would kill apt-cache with SIGPIPE, which pipefail turns into a failed setup (exit 141).
first_version() { apt-cache "${TRIXIE_APT[@]}" "$1" "$2" | awk '/^Version:/ && !v { v = $2 } END { print v }'; }

# dpkg's upstream part of a Debian version: 1:1.37.0-6+b9 -> 1.37.0, 1.7.24~ds1-6 -> 1.7.24.
upstream_version() { sed -E 's/^[0-9]+://; s/-[^-]*$//; s/[~+].*$//' <<< "$1"; }

install_containerd() {
  if [ -x "$BIN/containerd" ] && [ -x "$BIN/containerd-shim-runc-v2" ] && [ -x "$BIN/ctr" ] && [ -s "$BIN/.containerd.deb" ]; then
    return
  fi
  trixie_update
  local version
  version="$(first_version show containerd)"
  case "$(upstream_version "$version")" in
    "$CONTAINERD_SERIES"*) ;;
    *) fail "trixie offers containerd $version, expected ${CONTAINERD_SERIES}x" ;;
  esac
  (cd "$APT_DIR/debs" && rm -f containerd_*.deb && apt-get "${TRIXIE_APT[@]}" -qq download "containerd=$version")
  local deb
  deb="$(ls "$APT_DIR/debs"/containerd_*.deb)"
  rm -rf "$APT_DIR/root"
  dpkg -x "$deb" "$APT_DIR/root"
  install -m 0755 "$APT_DIR/root/usr/bin/containerd" "$APT_DIR/root/usr/bin/containerd-shim-runc-v2" \
    "$APT_DIR/root/usr/bin/ctr" "$BIN/"
  rm -rf "$APT_DIR/root"
  basename "$deb" > "$BIN/.containerd.deb"
  log "installed containerd, containerd-shim-runc-v2 and ctr from $(basename "$deb")"
}

# Our patches to CRIU (scripts/containerd/criu-*.patch), applied in name order; they are part of the build key.
CRIU_PATCHES=(scripts/containerd/criu-*.patch)
# CRIU caches its kernel probes ("kerndat", ~45 ms per CRIU run here) in <RUNDIR>/criu.kdat, but only on a
# tmpfs. A node's /run is one; this VM's is not, so the test stack's CRIU keeps its cache in /dev/shm
# (tmpfs, emptied on reboot like /run) and the tests and benchmarks see what a node sees.
CRIU_RUNDIR=/dev/shm

build_criu() {
  local patches_key
  patches_key="$( (cat "${CRIU_PATCHES[@]}"; echo "RUNDIR=$CRIU_RUNDIR") | sha256sum | cut -c1-16)"
  if [ -x "$BIN/criu" ] && grep -q "patches $patches_key" "$BIN/.criu.src" 2>/dev/null; then return; fi
  trixie_update
  local version
  version="$(first_version showsrc criu)"
  case "$(upstream_version "$version")" in
    "$CRIU_SERIES"*) ;;
    *) fail "trixie offers criu $version, expected ${CRIU_SERIES}x" ;;
  esac
  local upstream orig
  upstream="$(upstream_version "$version")"
  orig="$APT_DIR/src/criu_$upstream.orig.tar.xz"
  # apt verifies each file against the signed Sources index. Some mirrors serve the orig tarball but
  # not the .dsc/.debian.tar.xz, so apt's exit status is ignored and the tarball itself is required.
  (cd "$APT_DIR/src" && apt-get "${TRIXIE_APT[@]}" -qq source --download-only "criu=$version" >/dev/null 2>&1 || true)
  [ -s "$orig" ] || fail "could not download criu_$upstream.orig.tar.xz (trixie source $version)"
  local build="$STACK/criu-build"
  rm -rf "$build" && mkdir -p "$build"
  tar -xJf "$orig" -C "$build" --strip-components=1
  local patch
  for patch in "${CRIU_PATCHES[@]}"; do patch -s -d "$build" -p1 < "$patch"; done
  log "building criu $upstream with ${#CRIU_PATCHES[@]} patch(es) (make -j2 criu RUNDIR=$CRIU_RUNDIR)"
  make -C "$build" -j2 criu RUNDIR="$CRIU_RUNDIR" > "$STACK/criu-build.log" 2>&1 || { tail -30 "$STACK/criu-build.log" >&2; fail "criu build failed, log: $STACK/criu-build.log"; }
  # Renamed into place: a test running meanwhile finds the old binary or the new one, never none.
  install -m 0755 "$build/criu/criu" "$BIN/criu.new"
  mv -f "$BIN/criu.new" "$BIN/criu"
  rm -rf "$build"
  echo "criu_$upstream.orig.tar.xz ($version), patches $patches_key" > "$BIN/.criu.src"
  log "built criu $upstream"
}

build_runc() {
  command -v go >/dev/null || fail "Go >= 1.24 is needed to build runc (tools/runc/go.mod) and 'go' is not on PATH"
  # The key covers the pinned module graph and the compiler: a changed pin or Go rebuilds.
  local key
  key="$( (cat tools/runc/go.mod tools/runc/go.sum; go version) | sha256sum | cut -c1-16)"
  if [ -x "$BIN/runc" ] && [ "$(cat "$BIN/.runc.key" 2>/dev/null)" = "$key" ]; then return; fi
  local version
  version="$(awk '$1 == "github.com/opencontainers/runc" { print $2 }' tools/runc/go.mod)"
  [ -n "$version" ] || fail "tools/runc/go.mod does not require github.com/opencontainers/runc"
  log "building runc $version (cgo + libseccomp)"
  (
    cd tools/runc
    export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-modcacherw -buildvcs=false" \
      CGO_ENABLED=1 GOTOOLCHAIN=local
    go build -p 2 -trimpath -tags seccomp \
      -ldflags "-X main.version=${version#v} -X main.gitCommit=$version" -o "$BIN/runc" github.com/opencontainers/runc
  )
  echo "$key" > "$BIN/.runc.key"
  log "built runc $version"
}

# busybox-static from the machine's own suite: the whole rootfs of the test image (tests/harness/containerd).
install_busybox() {
  if [ -x "$STACK/image/busybox" ] && [ -s "$STACK/image/.busybox.deb" ]; then return; fi
  local debs="$STACK/debs"
  rm -rf "$debs" && mkdir -p "$debs"
  local download=(apt-get -qq -o APT::Sandbox::User=root -o DPkg::Lock::Timeout=600 download busybox-static)
  if ! (cd "$debs" && "${download[@]}"); then
    apt-get -qq -o DPkg::Lock::Timeout=600 update
    (cd "$debs" && "${download[@]}")
  fi
  local deb
  deb="$(ls "$debs"/busybox-static_*.deb)"
  dpkg -x "$deb" "$debs/root"
  install -m 0755 "$debs/root/bin/busybox" "$STACK/image/busybox"
  basename "$deb" > "$STACK/image/.busybox.deb"
  rm -rf "$debs"
  log "installed busybox from $(basename "$deb")"
}

install_host_packages
install_containerd
build_criu
build_runc
install_busybox

# The stack must work on this kernel, not only exist: `criu check` exits non-zero if CRIU cannot dump here.
"$BIN/criu" check > "$STACK/criu-check.log" 2>&1 || { cat "$STACK/criu-check.log" >&2; fail "criu check failed"; }
{
  echo "containerd=$("$BIN/containerd" --version | awk '{ print $3 }')"
  echo "runc=$("$BIN/runc" --version | awk 'NR == 1 { print $3 }')"
  echo "criu=$("$BIN/criu" --version | awk '/^Version:/ { print $2 }')"
  echo "busybox=$("$STACK/image/busybox" | awk 'NR == 1 { print $2 }')"
} > "$STACK/versions.env"
log "ready in $BIN: $(tr '\n' ' ' < "$STACK/versions.env")(criu check: $(grep -o 'Looks good' "$STACK/criu-check.log" || echo ok))"
