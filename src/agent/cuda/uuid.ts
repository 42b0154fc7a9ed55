import { InvalidInputError } from '../../lib/errors.ts';

const GPU_UUID = /^GPU-([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i;

/** "GPU-6f2b...": the 16 bytes of the CUuuid the driver expects. */
export function gpuUuidBytes(uuid: string): Uint8Array {
  const match = GPU_UUID.exec(uuid.trim());
  if (!match) {
    throw new InvalidInputError(`invalid GPU UUID "${uuid}": expected GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, { uuid });
  }
  return Uint8Array.from(Buffer.from(match.slice(1).join(''), 'hex'));
}
