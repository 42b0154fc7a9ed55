import { closeSync, openSync, readSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { KybernateError } from '../../lib/errors.ts';
import { parseMaps } from './maps.ts';
import { PtraceError, X86_64_REG, type Ptrace, type ThreadStop } from './ptrace.ts';

/** Stopping or steering a process's threads failed; the message says which step and thread. */
export class ProcessControlError extends KybernateError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: ErrorOptions) {
    super('ProcessControlFailed', message, context, options);
  }
}

export interface StopOptions {
  /** how long to wait for each thread to reach its stop (a thread in uninterruptible sleep stops only when it wakes) */
  timeoutMs: number;
  /** /proc, where the threads and the memory are found */
  procRoot?: string;
}

const ESRCH = 3;
const EPERM = 1;
/** how long a detach waits for a thread interrupted just before it to reach its stop */
const DETACH_WAIT_MS = 1000;
const SIGTRAP = 5;
/** Every signal blocked but SIGTRAP (single steps and interrupts); SIGKILL and SIGSTOP cannot be blocked anyway. */
const ALL_BUT_SIGTRAP = ~(1n << BigInt(SIGTRAP - 1)) & 0xffffffffffffffffn;
const SYSCALL_INSTRUCTION = Buffer.from([0x0f, 0x05]);
/** orig_rax of -1 tells the kernel there is no syscall to restart at this stop. */
const NO_SYSCALL = 0xffffffffffffffffn;

/**
 * Every thread of one process held in a ptrace stop by the agent: nothing of the process runs until
 * `detach()`, except a thread the caller lets run (`runThread`, e.g. the CUDA driver's restore thread
 * during a checkpoint). `syscall()` makes one stopped thread execute a system call in the process (the
 * way CRIU's parasite code is started) and puts the thread back exactly as it was; a system call it was
 * blocked in restarts after the detach. Threads keep their pending signals: a signal that stopped a
 * thread is delivered again at the detach. Not for the agent's own child processes: Node's child watcher
 * would reap their ptrace stops (containers are the shims' children, never the agent's).
 */
export class StoppedProcess {
  readonly pid: number;
  private readonly ptrace: Ptrace;
  private readonly procRoot: string;
  private readonly timeoutMs: number;
  /** stopped threads and the signal each owes the process (0: none) */
  private readonly stopped = new Map<number, number>();
  /** threads let run, with the signal mask they had */
  private readonly running = new Map<number, bigint>();
  /** seized and interrupted, not yet seen stopped */
  private readonly attached = new Set<number>();
  private syscallAddress: number | undefined;
  private seccompSuspended = true;

  private constructor(ptrace: Ptrace, pid: number, options: StopOptions) {
    this.ptrace = ptrace;
    this.pid = pid;
    this.procRoot = options.procRoot ?? '/proc';
    this.timeoutMs = options.timeoutMs;
  }

  /**
   * Seizes and stops every thread of `pid`, including threads started while it does so. Seccomp is
   * suspended for the process's threads where the agent may (it is privileged), so that an injected
   * system call is not refused by the container's filter. Fails with every thread let go again.
   */
  static async stop(ptrace: Ptrace, pid: number, options: StopOptions): Promise<StoppedProcess> {
    const stoppedProcess = new StoppedProcess(ptrace, pid, options);
    try {
      await stoppedProcess.stopAllThreads();
      return stoppedProcess;
    } catch (err) {
      await stoppedProcess.detach();
      throw err instanceof KybernateError ? err : new ProcessControlError(`could not stop the threads of pid ${pid}: ${(err as Error).message}`, { pid }, { cause: err });
    }
  }

  get threads(): number[] {
    return [...this.stopped.keys(), ...this.running.keys()];
  }

  private async stopAllThreads(): Promise<void> {
    const seen = new Set<number>();
    for (;;) {
      const tids = (await fs.readdir(path.join(this.procRoot, String(this.pid), 'task'))).map(Number).filter((tid) => !seen.has(tid));
      if (tids.length === 0) break;
      for (const tid of tids) {
        seen.add(tid);
        if (!this.seize(tid)) continue;
        this.attached.add(tid);
        this.ptrace.interrupt(tid);
      }
    }
    for (const tid of [...this.attached]) await this.awaitStop(tid, this.timeoutMs);
    if (!this.stopped.has(this.pid)) throw new ProcessControlError(`process ${this.pid} exited while it was being stopped`, { pid: this.pid });
  }

  /** Waits for a seized thread's stop; a thread that exited meanwhile is simply not part of the process any more. */
  private async awaitStop(tid: number, timeoutMs: number): Promise<void> {
    const stop = await this.ptrace.waitStop(tid, timeoutMs);
    this.attached.delete(tid);
    if (stop.kind === 'stopped') this.stopped.set(tid, owedSignal(stop));
  }

  /** false when the thread is already gone */
  private seize(tid: number): boolean {
    try {
      this.ptrace.seize(tid, { suspendSeccomp: true });
      return true;
    } catch (err) {
      if (err instanceof PtraceError && err.errno === ESRCH) return false;
      // Suspending seccomp needs CAP_SYS_ADMIN; without it a filter may refuse (or punish) an injected call.
      if (err instanceof PtraceError && err.errno === EPERM) {
        this.ptrace.seize(tid, { suspendSeccomp: false });
        this.seccompSuspended = false;
        return true;
      }
      throw err;
    }
  }

  /** Whether syscall() can run here: seccomp is suspended for the threads, or the process has no filter. */
  async syscallsAllowed(): Promise<boolean> {
    if (this.seccompSuspended) return true;
    const status = await fs.readFile(path.join(this.procRoot, String(this.pid), 'status'), 'utf8');
    return /^Seccomp:\s+0$/m.test(status);
  }

  /** Lets one stopped thread run, with every signal blocked so that it runs no handler while the rest is stopped. */
  runThread(tid: number): void {
    if (!this.stopped.has(tid)) throw new ProcessControlError(`thread ${tid} is not a stopped thread of process ${this.pid}`, { pid: this.pid, tid });
    const mask = this.ptrace.getSigmask(tid);
    this.ptrace.setSigmask(tid, ALL_BUT_SIGTRAP);
    this.ptrace.cont(tid);
    this.running.set(tid, mask);
    this.stopped.delete(tid);
  }

  /** Stops a thread let run by runThread again and gives it back its signal mask. */
  async haltThread(tid: number): Promise<void> {
    const mask = this.running.get(tid);
    if (mask === undefined) return;
    this.ptrace.interrupt(tid);
    const stop = await this.ptrace.waitStop(tid, this.timeoutMs);
    this.running.delete(tid);
    if (stop.kind === 'exited') return;
    this.ptrace.setSigmask(tid, mask);
    this.stopped.set(tid, owedSignal(stop));
  }

  /**
   * Executes a system call (x86_64 numbering) in the process on one of its stopped threads and returns
   * the kernel's result (a negative errno on failure). The thread's registers and signal mask are put
   * back afterwards.
   */
  async syscall(nr: number, args: readonly number[]): Promise<number> {
    const tid = this.stopped.has(this.pid) ? this.pid : [...this.stopped.keys()][0];
    if (tid === undefined) throw new ProcessControlError(`process ${this.pid} has no stopped thread to run a system call on`, { pid: this.pid });
    const address = await this.findSyscallInstruction();
    const saved = this.ptrace.getRegs(tid);
    const mask = this.ptrace.getSigmask(tid);
    const regs = Buffer.from(saved);
    regs.writeBigUInt64LE(BigInt(nr), X86_64_REG.rax);
    const argRegs = [X86_64_REG.rdi, X86_64_REG.rsi, X86_64_REG.rdx, X86_64_REG.r10, X86_64_REG.r8, X86_64_REG.r9];
    args.forEach((arg, i) => regs.writeBigUInt64LE(BigInt.asUintN(64, BigInt(arg)), argRegs[i]!));
    regs.writeBigUInt64LE(NO_SYSCALL, X86_64_REG.origRax);
    regs.writeBigUInt64LE(BigInt(address), X86_64_REG.rip);
    this.ptrace.setSigmask(tid, ALL_BUT_SIGTRAP);
    this.ptrace.setRegs(tid, regs);
    try {
      this.ptrace.singleStep(tid);
      const stop = await this.ptrace.waitStop(tid, this.timeoutMs);
      if (stop.kind === 'exited') throw new ProcessControlError(`thread ${tid} of process ${this.pid} exited during an injected system call ${nr}`, { pid: this.pid, tid, nr });
      const after = this.ptrace.getRegs(tid);
      if (after.readBigUInt64LE(X86_64_REG.rip) !== BigInt(address + SYSCALL_INSTRUCTION.length)) {
        throw new ProcessControlError(`thread ${tid} of process ${this.pid} did not complete the injected system call ${nr} (stopped by signal ${stop.signal})`, { pid: this.pid, tid, nr });
      }
      return Number(after.readBigInt64LE(X86_64_REG.rax));
    } finally {
      this.ptrace.setRegs(tid, saved);
      this.ptrace.setSigmask(tid, mask);
    }
  }

  /** A `syscall` instruction in the process's vDSO: executable in every process, and never written to. */
  private async findSyscallInstruction(): Promise<number> {
    if (this.syscallAddress !== undefined) return this.syscallAddress;
    const base = path.join(this.procRoot, String(this.pid));
    const vdso = parseMaps(await fs.readFile(path.join(base, 'maps'), 'utf8')).find((m) => m.path === '[vdso]');
    if (!vdso) throw new ProcessControlError(`process ${this.pid} has no vDSO to run a system call from`, { pid: this.pid });
    const bytes = Buffer.alloc(vdso.end - vdso.start);
    const fd = openSync(path.join(base, 'mem'), 'r');
    try {
      readSync(fd, bytes, 0, bytes.length, vdso.start);
    } finally {
      closeSync(fd);
    }
    const offset = bytes.indexOf(SYSCALL_INSTRUCTION);
    if (offset < 0) throw new ProcessControlError(`the vDSO of process ${this.pid} holds no syscall instruction`, { pid: this.pid });
    this.syscallAddress = vdso.start + offset;
    return this.syscallAddress;
  }

  /**
   * Lets every thread go (threads let run or not yet stopped are stopped first: ptrace detaches only
   * stopped threads), each with the signal that stopped it. Never throws: a thread that is gone is no
   * longer ours to release, and one that never stops is released when the agent exits.
   */
  async detach(): Promise<void> {
    for (const tid of [...this.running.keys()]) await this.haltThread(tid).catch(() => this.running.delete(tid));
    for (const tid of [...this.attached]) await this.awaitStop(tid, DETACH_WAIT_MS).catch(() => this.attached.delete(tid));
    for (const [tid, signal] of this.stopped) {
      try {
        this.ptrace.detach(tid, signal);
      } catch {
        // gone (ESRCH): nothing to release
      }
    }
    this.stopped.clear();
  }
}

/** The signal a ptrace stop took from the thread (a signal-delivery stop), to be delivered at the detach. */
function owedSignal(stop: ThreadStop & { kind: 'stopped' }): number {
  return stop.event === 0 && stop.signal !== SIGTRAP ? stop.signal : 0;
}
