import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../../src/lib/log.ts';
import { HarnessError } from './errors.ts';

export interface DaemonSpec {
  name: string;
  binary: string;
  args: string[];
  /** stdout and stderr are appended here, across restarts. */
  logFile: string;
}

export interface WaitOptions {
  timeoutMs: number;
  /** Human description of the awaited state, for the timeout message. */
  what: string;
}

/** One child process with its output in a log file; readiness is probed by the caller. */
export class Daemon {
  readonly spec: DaemonSpec;
  private readonly child: ChildProcess;
  private readonly exit: Promise<number | string>;
  private exitStatus: number | string | undefined;

  private constructor(spec: DaemonSpec, child: ChildProcess) {
    this.spec = spec;
    this.child = child;
    this.exit = new Promise((resolve) => {
      const settle = (status: number | string) => {
        this.exitStatus = status;
        resolve(status);
      };
      child.once('exit', (code, signal) => settle(signal ?? code ?? 'unknown'));
      child.once('error', (err) => settle(`spawn error: ${err.message}`));
    });
  }

  static start(spec: DaemonSpec, log: Logger): Daemon {
    const out = openSync(spec.logFile, 'a');
    try {
      // setpriv (util-linux) sets the parent-death signal and execs the daemon: when the test process
      // dies in any way (vitest kills its workers with signals, no 'exit' handler runs), the kernel
      // kills the daemon, so no etcd or kube-apiserver outlives its test.
      const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', spec.binary, ...spec.args], {
        stdio: ['ignore', out, out],
      });
      log.debug({ daemon: spec.name, pid: child.pid, args: spec.args }, 'daemon started');
      return new Daemon(spec, child);
    } finally {
      closeSync(out);
    }
  }

  /** Starts the daemon and waits until `probe` says it is ready; a daemon that never got ready is stopped. */
  static async startReady(spec: DaemonSpec, log: Logger, probe: () => Promise<boolean>, wait: WaitOptions): Promise<Daemon> {
    const daemon = Daemon.start(spec, log);
    try {
      await daemon.waitUntil(probe, wait);
      return daemon;
    } catch (err) {
      await daemon.stop(1_000);
      throw err;
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exited(): boolean {
    return this.exitStatus !== undefined;
  }

  /** Polls `probe` until it returns true; fails at once if the daemon exits, with its log's tail. */
  async waitUntil(probe: () => Promise<boolean>, options: WaitOptions): Promise<void> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      if (this.exitStatus !== undefined) {
        throw await this.failure(`${this.spec.name} exited (${this.exitStatus}) before ${options.what}`);
      }
      // A probe that hangs (a port taken by a silent process) must not hide that the daemon died.
      if (await Promise.race([probe().catch(() => false), this.exit.then(() => false)])) return;
      if (Date.now() > deadline) {
        throw await this.failure(`${this.spec.name} not ${options.what} within ${options.timeoutMs} ms`);
      }
      await sleep(100);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs: number): Promise<void> {
    if (this.exitStatus !== undefined) return;
    this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exit;
    clearTimeout(killer);
  }

  async logTail(lines = 30): Promise<string> {
    const text = await readFile(this.spec.logFile, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }

  private async failure(message: string): Promise<HarnessError> {
    const tail = await this.logTail();
    return new HarnessError(`${message}; log ${this.spec.logFile}:\n${tail}`, {
      daemon: this.spec.name,
      pid: this.child.pid,
      logFile: this.spec.logFile,
      logTail: tail,
    });
  }
}
