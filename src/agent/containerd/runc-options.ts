import type { Any } from './types.ts';

/**
 * The runc shim's option messages (containerd.runc.v1, runtime/v2/runc/options/oci.proto) travel inside
 * google.protobuf.Any. The shim decodes them with Go's typeurl, which wants the bare message name as type
 * URL (no "type.googleapis.com/" prefix), or it rejects the options.
 */
export const RUNC_CHECKPOINT_OPTIONS_TYPE = 'containerd.runc.v1.CheckpointOptions';
export const RUNC_OPTIONS_TYPE = 'containerd.runc.v1.Options';

/** Field numbers from oci.proto at containerd 1.7.24 (vendored under proto/vendor). */
const CHECKPOINT_FIELDS = { exit: 1, openTcp: 2, fileLocks: 5, imagePath: 8, workPath: 9 } as const;
const OPTIONS_FIELDS = { criuImagePath: 10, criuWorkPath: 11 } as const;

function varint(value: number): number[] {
  const bytes: number[] = [];
  let v = value;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v);
  return bytes;
}

/** Protobuf wire encoding of bool (varint) and string (length-delimited) fields; defaults are omitted as proto3 does. */
export function encodeFields(fields: [number, boolean | string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [number, value] of fields) {
    if (typeof value === 'boolean') {
      if (value) parts.push(Buffer.from([...varint(number << 3), 1]));
    } else if (value !== '') {
      const bytes = Buffer.from(value, 'utf8');
      parts.push(Buffer.from([...varint((number << 3) | 2), ...varint(bytes.length)]), bytes);
    }
  }
  return Buffer.concat(parts);
}

export interface RuncCheckpointOptions {
  /** false = runc --leave-running */
  exit: boolean;
  /** CRIU writes its image here instead of containerd's content store. */
  imagePath: string;
  workPath: string;
  fileLocks?: boolean;
  openTcp?: boolean;
}

export function encodeCheckpointOptions(options: RuncCheckpointOptions): Any {
  const f = CHECKPOINT_FIELDS;
  const value = encodeFields([
    [f.exit, options.exit],
    [f.openTcp, options.openTcp ?? false],
    [f.fileLocks, options.fileLocks ?? false],
    [f.imagePath, options.imagePath],
    [f.workPath, options.workPath],
  ]);
  return { type_url: RUNC_CHECKPOINT_OPTIONS_TYPE, value };
}

/**
 * Task create options for a CRIU restore: the container's own runc options (binary, root, systemd
 * cgroups) as they were, plus where CRIU reads the image and writes its work files. The shim uses the
 * task options instead of the runtime options when both are given, hence the merge. Appending the new
 * fields to the encoded original is a merge by protobuf's rules: for a scalar field seen twice, the
 * last value wins.
 */
export function encodeRestoreTaskOptions(runtimeOptions: Any | null, criuImagePath: string, criuWorkPath: string): Any {
  const base = runtimeOptions && runtimeOptions.type_url.replace(/^.*\//, '') === RUNC_OPTIONS_TYPE ? runtimeOptions.value : Buffer.alloc(0);
  const added = encodeFields([
    [OPTIONS_FIELDS.criuImagePath, criuImagePath],
    [OPTIONS_FIELDS.criuWorkPath, criuWorkPath],
  ]);
  return { type_url: RUNC_OPTIONS_TYPE, value: Buffer.concat([base, added]) };
}
