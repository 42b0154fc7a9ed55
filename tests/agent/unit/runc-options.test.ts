import { describe, expect, it } from 'vitest';
import { encodeCheckpointOptions, encodeFields, encodeRestoreTaskOptions } from '../../../src/agent/containerd/runc-options.ts';

describe('runc option encoding', () => {
  it('encodes bool and string fields in protobuf wire format, omitting defaults', () => {
    // field 1 varint true; field 8 length-delimited "ab"
    expect([...encodeFields([[1, true], [2, false], [8, 'ab'], [9, '']])]).toEqual([0x08, 0x01, 0x42, 0x02, 0x61, 0x62]);
    // field numbers >= 16 need a two-byte tag
    expect([...encodeFields([[16, true]])]).toEqual([0x80, 0x01, 0x01]);
  });

  it('builds CheckpointOptions with the bare type URL the runc shim expects', () => {
    const any = encodeCheckpointOptions({ exit: false, imagePath: '/i', workPath: '/w', fileLocks: true });
    expect(any.type_url).toBe('containerd.runc.v1.CheckpointOptions');
    expect([...any.value]).toEqual([0x28, 0x01, 0x42, 0x02, 0x2f, 0x69, 0x4a, 0x02, 0x2f, 0x77]);
  });

  it('appends the CRIU paths to the container runtime options (last value wins on decode)', () => {
    const runtime = { type_url: 'containerd.runc.v1.Options', value: encodeFields([[6, 'runc-custom'], [10, '/old']]) };
    const any = encodeRestoreTaskOptions(runtime, '/img', '/work');
    expect(any.type_url).toBe('containerd.runc.v1.Options');
    expect(any.value.subarray(0, runtime.value.length)).toEqual(runtime.value);
    expect(any.value.subarray(runtime.value.length)).toEqual(encodeFields([[10, '/img'], [11, '/work']]));
    // options of another runtime are not carried over
    expect(encodeRestoreTaskOptions({ type_url: 'other.Options', value: Buffer.from([1]) }, '/img', '').value).toEqual(encodeFields([[10, '/img']]));
  });
});
