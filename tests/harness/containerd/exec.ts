import { execFile } from 'node:child_process';
import { HarnessError } from '../kube/errors.ts';

export interface ExecOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
}

/** Runs a harness tool (ctr, tar, runc, umount) to completion; a non-zero exit throws with its stderr. */
export function execTool(file: string, args: string[], options: ExecOptions = {}): Promise<string> {
  const timeout = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: options.env, cwd: options.cwd, timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (!err) {
          resolve(stdout);
          return;
        }
        const reason = err.killed ? `killed after ${timeout} ms` : `exit ${String(err.code)}`;
        reject(
          new HarnessError(`${file} ${args.join(' ')} failed (${reason}): ${stderr.trim() || stdout.trim()}`, {
            file,
            args,
            stderr,
          }),
        );
      },
    );
  });
}
