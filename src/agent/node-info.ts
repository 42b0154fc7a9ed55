import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface NodeInfo {
  node: string;
  kernel: string;
  criu: string;
  containerd: string;
}

/** The CRIU runc will use (first on PATH), as "4.1.1"; "unknown" when it cannot be run. */
export async function criuVersion(criuBinary = 'criu'): Promise<string> {
  try {
    const { stdout } = await run(criuBinary, ['--version'], { timeout: 5_000 });
    return /Version:\s*(\S+)/.exec(stdout)?.[1] ?? stdout.trim();
  } catch {
    return 'unknown';
  }
}

export function nodeName(): string {
  return process.env.NODE_NAME ?? os.hostname();
}

export const THP_ENABLED_FILE = '/sys/kernel/mm/transparent_hugepage/enabled';
/** Where the NVIDIA kernel driver announces itself: a node with it is a GPU node. */
const NVIDIA_DRIVER_FILE = '/proc/driver/nvidia/version';

/** The selected mode of a transparent_hugepage/enabled file ("always [madvise] never" -> "madvise"). */
export function parseThpMode(text: string): string {
  return /\[(\w+)\]/.exec(text)?.[1] ?? 'unknown';
}

/** The node's transparent huge pages mode, read each time (an operator may change it while the agent runs). */
export async function transparentHugePages(file = THP_ENABLED_FILE): Promise<string> {
  return parseThpMode(await fs.readFile(file, 'utf8').catch(() => ''));
}

export function hasNvidiaDriver(file = NVIDIA_DRIVER_FILE): boolean {
  return existsSync(file);
}

/**
 * The warning for a GPU node whose THP mode is not `always`: the CUDA checkpoint/restore and CRIU's page
 * restore fault the GPU memory's host copy in 4 KiB at a time then, about 1.5-2x slower (docs/gpu.md).
 */
export function thpWarning(mode: string, gpuNode: boolean): string | undefined {
  if (!gpuNode || mode === 'always') return undefined;
  return `transparent huge pages are "${mode}" on this GPU node: GPU checkpoint, restore and resume run ~1.5-2x slower than with "always" (${THP_ENABLED_FILE}; docs/operations.md)`;
}
