#!/usr/bin/env bash
# Binaries for the kube API tier (tests/harness/kube): kube-apiserver and kubectl built from the pinned
# Kubernetes release in tools/kube, and etcd unpacked from Debian trixie's etcd-server package.
# Everything lands in $KYBERNATE_CACHE/bin; a warm rerun finds the stamps and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
CACHE="${KYBERNATE_CACHE:-$REPO/.cache}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

# Commands of k8s.io/kubernetes to build; each must be a `tool` line in tools/kube/go.mod.
# The E2E cluster will add kubelet kube-scheduler kube-controller-manager here.
KUBE_COMMANDS=(kube-apiserver kubectl)

log() { echo "setup/20-kube: $*"; }

build_kube() {
  if ! command -v go >/dev/null; then
    echo "setup/20-kube: Go >= 1.25 is needed to build kube-apiserver (tools/kube/go.mod) and 'go' is not on PATH" >&2
    exit 1
  fi
  # The key covers the pinned module graph and the compiler: a changed release or Go rebuilds.
  local key
  key="$( (cat tools/kube/go.mod tools/kube/go.sum; go version) | sha256sum | cut -c1-16)"
  local missing=()
  local cmd
  for cmd in "${KUBE_COMMANDS[@]}"; do
    if [ ! -x "$BIN/$cmd" ] || [ "$(cat "$BIN/.$cmd.key" 2>/dev/null)" != "$key" ]; then
      missing+=("$cmd")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "kube binaries up to date (${KUBE_COMMANDS[*]}, key $key)"
    return
  fi
  log "building ${missing[*]} from $(awk '$1 == "k8s.io/kubernetes" { print $2 }' tools/kube/go.mod) (cold: many minutes)"
  local pkgs=()
  for cmd in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  local start
  start=$(date +%s)
  # Module and build caches live in the project cache too, so a warm rerun and later builds
  # (kubelet & co) reuse them; -modcacherw keeps the cache deletable with rm -rf.
  (
    cd tools/kube
    export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-modcacherw -buildvcs=false" \
      CGO_ENABLED=0 GOTOOLCHAIN=local
    go build -p 2 -trimpath -ldflags='-s -w' -o "$BIN/" "${pkgs[@]}"
  )
  for cmd in "${missing[@]}"; do echo "$key" > "$BIN/.$cmd.key"; done
  log "built ${missing[*]} in $(( $(date +%s) - start )) s"
}

# The machine's own Debian mirror (deb822 .sources or one-line sources.list), never a hard-coded host.
debian_mirror() {
  local uri
  # deb822: one stanza per paragraph; take the first URI of a stanza that has a plain release suite.
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v RS= '
      {
        uris = ""; plain = 0
        n = split($0, lines, "\n")
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^URIs:/) { split(lines[i], f, /[ \t]+/); uris = f[2] }
          if (lines[i] ~ /^Suites:/) {
            m = split(lines[i], f, /[ \t]+/)
            for (j = 2; j <= m; j++) if (f[j] != "" && f[j] !~ /-(security|updates|backports)$/) plain = 1
          }
        }
        if (uris != "" && plain) { print uris; exit }
      }')"
  if [ -z "$uri" ]; then
    # One-line format: deb [options] URI suite components...
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '
        $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { if ($(i+1) !~ /-(security|updates|backports)$/) { print $i; exit } else break } }')"
  fi
  if [ -z "$uri" ]; then
    echo "setup/20-kube: no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/" >&2
    exit 1
  fi
  echo "$uri"
}

# etcd-server 3.5 from trixie: its etcd binary is static enough for bookworm (needs glibc 2.34).
install_etcd() {
  if [ -x "$BIN/etcd" ] && [ -s "$BIN/.etcd.deb" ]; then
    log "etcd up to date ($(cat "$BIN/.etcd.deb"))"
    return
  fi
  local apt_dir="$CACHE/apt-trixie"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main" \
    > "$apt_dir/sources.list"
  # A private sources list, package lists and package cache: the machine's own apt state stays untouched.
  local apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
    -o APT::Sandbox::User=root -o DPkg::Lock::Timeout=600
  )
  apt-get "${apt_opts[@]}" -qq update
  (cd "$apt_dir/debs" && rm -f etcd-server_*.deb && apt-get "${apt_opts[@]}" -qq download etcd-server)
  local deb
  deb="$(ls "$apt_dir/debs"/etcd-server_*.deb)"
  rm -rf "$apt_dir/root"
  dpkg -x "$deb" "$apt_dir/root"
  install -m 0755 "$apt_dir/root/usr/bin/etcd" "$BIN/etcd"
  "$BIN/etcd" --version >/dev/null
  basename "$deb" > "$BIN/.etcd.deb"
  log "installed etcd from $(basename "$deb")"
}

# The harness makes its certificates with the openssl CLI.
command -v openssl >/dev/null || apt-get -o DPkg::Lock::Timeout=600 install -y -qq openssl
install_etcd
build_kube
