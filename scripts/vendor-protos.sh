#!/usr/bin/env bash
# Re-fetches the containerd API .proto files the node agent uses, at the containerd version the test
# stack runs (1.7.24), from the Go module proxy, into proto/vendor/ (committed; loaded at run time by
# @grpc/proto-loader). containerd 1.7 keeps its gRPC API in a separate module whose version the main
# module's go.mod pins; the runc options (CheckpointOptions, Options) live in the main module.
# Kubernetes' CRI (runtime.v1, what kubelet speaks to containerd's CRI plugin; used by the tests) comes
# from k8s.io/cri-api at the version containerd's go.mod pins, with the gogo.proto it imports.
# google/protobuf/*.proto come with protobufjs, so they are not vendored.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTAINERD_VERSION=v1.7.24
DEST=proto/vendor/github.com/containerd/containerd
PROTOS_API=(
  services/containers/v1/containers.proto
  services/content/v1/content.proto
  services/diff/v1/diff.proto
  services/images/v1/images.proto
  services/leases/v1/leases.proto
  services/namespaces/v1/namespace.proto
  services/snapshots/v1/snapshots.proto
  services/tasks/v1/tasks.proto
  services/version/v1/version.proto
  types/descriptor.proto
  types/metrics.proto
  types/mount.proto
  types/task/task.proto
)

module_dir() { # <module>@<version> -> its directory in the module cache (downloaded if needed)
  (cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "$1") | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && go mod init kybernate.local/vendor-protos >/dev/null 2>&1)
main_dir=$(module_dir "github.com/containerd/containerd@$CONTAINERD_VERSION")
api_version=$(awk '$1 == "github.com/containerd/containerd/api" { print $2 }' "$main_dir/go.mod")
api_dir=$(module_dir "github.com/containerd/containerd/api@$api_version")

cri_version=$(awk '$1 == "k8s.io/cri-api" { print $2 }' "$main_dir/go.mod")
cri_dir=$(module_dir "k8s.io/cri-api@$cri_version")
gogo_version=$(awk '$1 == "github.com/gogo/protobuf" { print $2 }' "$cri_dir/go.mod")
gogo_dir=$(module_dir "github.com/gogo/protobuf@$gogo_version")

rm -rf "$DEST" proto/vendor/k8s.io/cri-api proto/vendor/github.com/gogo
for proto in "${PROTOS_API[@]}"; do
  install -D -m 0644 "$api_dir/$proto" "$DEST/api/$proto"
done
install -D -m 0644 "$main_dir/runtime/v2/runc/options/oci.proto" "$DEST/runtime/v2/runc/options/oci.proto"
install -D -m 0644 "$api_dir/LICENSE" "$DEST/api/LICENSE"
install -D -m 0644 "$cri_dir/pkg/apis/runtime/v1/api.proto" proto/vendor/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto
install -D -m 0644 "$cri_dir/LICENSE" proto/vendor/k8s.io/cri-api/LICENSE
install -D -m 0644 "$gogo_dir/gogoproto/gogo.proto" proto/vendor/github.com/gogo/protobuf/gogoproto/gogo.proto
install -D -m 0644 "$gogo_dir/LICENSE" proto/vendor/github.com/gogo/protobuf/LICENSE
{
  printf 'containerd %s (API module %s), fetched by scripts/vendor-protos.sh\n' "$CONTAINERD_VERSION" "$api_version"
  printf 'k8s.io/cri-api %s (runtime.v1, as containerd %s pins it), github.com/gogo/protobuf %s (gogo.proto)\n' \
    "$cri_version" "$CONTAINERD_VERSION" "$gogo_version"
} > proto/vendor/VERSION
echo "vendored containerd $CONTAINERD_VERSION API $api_version, cri-api $cri_version and gogo $gogo_version protos into proto/vendor"
