import { execFile } from 'node:child_process';
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
