#!/usr/bin/env bash
# What the node agent's tests (tests/agent) need beyond the containerd/CRIU stack of 30-containerd.sh:
#   iptables   CRIU locks a task's own network namespace with iptables-restore/ip6tables-restore during a
#              dump; without them every checkpoint of a container with its own netns fails.
#   iproute2   `ip netns` for the restore-into-a-target-netns test; util-linux for nsenter.
#   openssl    certificates for the mutual-TLS test of the agent's TCP listener.
# A warm rerun checks the packages and installs nothing.
set -euo pipefail

PACKAGES=(iptables iproute2 util-linux openssl)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then missing+=("$pkg"); fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup/45-agent: apt-get install ${missing[*]}"
apt_install=(apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600)
# The machine's package lists may be missing or stale on a fresh machine: update once and retry.
if ! DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" "${missing[@]}"; then
  apt-get -qq -o DPkg::Lock::Timeout=600 update
  DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" "${missing[@]}"
fi
