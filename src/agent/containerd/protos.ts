import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

/** proto/vendor holds containerd's .proto files at the pinned version (scripts/vendor-protos.sh). */
export const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../proto');
const VENDOR = path.join(PROTO_ROOT, 'vendor');
const API = 'github.com/containerd/containerd/api/services';

const SERVICE_FILES = [
  `${API}/containers/v1/containers.proto`,
  `${API}/content/v1/content.proto`,
  `${API}/diff/v1/diff.proto`,
  `${API}/images/v1/images.proto`,
  `${API}/leases/v1/leases.proto`,
  `${API}/namespaces/v1/namespace.proto`,
  `${API}/snapshots/v1/snapshots.proto`,
  `${API}/tasks/v1/tasks.proto`,
  `${API}/version/v1/version.proto`,
];

let packageDefinition: protoLoader.PackageDefinition | undefined;

export function containerdPackageDefinition(): protoLoader.PackageDefinition {
  packageDefinition ??= protoLoader.loadSync(SERVICE_FILES, {
    includeDirs: [VENDOR],
    keepCase: true,
    longs: Number,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  return packageDefinition;
}
