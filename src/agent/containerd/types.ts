/**
 * The containerd 1.7 API messages the agent uses, as @grpc/proto-loader hands them over (field names as in
 * the .proto files, int64 as number, bytes as Buffer). Only the fields the agent reads or sets are listed.
 */

export interface Any {
  type_url: string;
  value: Buffer;
}

export interface Descriptor {
  media_type: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export interface Container {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: { name: string; options: Any | null } | null;
  spec: Any | null;
  snapshotter: string;
  snapshot_key: string;
  extensions?: Record<string, Any>;
  sandbox?: string;
}

/** containerd.v1.types.Status */
export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING';

export interface Process {
  container_id: string;
  id: string;
  pid: number;
  status: TaskStatus;
  exit_status: number;
}

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
  labels: Record<string, string>;
}

export interface Image {
  name: string;
  labels: Record<string, string>;
  target: Descriptor | null;
}

export interface Lease {
  id: string;
  labels: Record<string, string>;
}
