import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import koffi from 'koffi';
import { KybernateError } from '../../lib/errors.ts';

/** A ptrace or waitpid call failed: names the request, the thread and the errno. */
export class PtraceError extends KybernateError {
  readonly errno: number;

  constructor(request: string, tid: number, errno: number, detail = '') {
    const name = Object.entries(os.constants.errno).find(([, value]) => value === errno)?.[0] ?? `errno ${errno}`;
    super('PtraceFailed', `ptrace ${request} of thread ${tid} failed: ${name}${detail ? ` (${detail})` : ''}`, { request, tid, errno });
    this.errno = errno;
  }
}

/** How a waited-for thread ended up: stopped (with the stop signal and ptrace event) or gone. */
export type ThreadStop = { kind: 'stopped'; signal: number; event: number } | { kind: 'exited' };

/**
 * The ptrace requests the agent uses, on one thread of the agent (ptrace binds a tracee to the tracer
 * thread, so every call is synchronous on the event loop's thread; each takes microseconds).
 */
export interface Ptrace {
  /** PTRACE_SEIZE: attach without stopping; `suspendSeccomp` lets injected syscalls pass the tracee's filter. */
  seize(tid: number, options: { suspendSeccomp: boolean }): void;
  interrupt(tid: number): void;
  cont(tid: number): void;
  singleStep(tid: number): void;
  /** Lets the thread go; `signal` (0: none) is delivered to it, e.g. the one that stopped it. */
  detach(tid: number, signal?: number): void;
  getRegs(tid: number): Buffer;
  setRegs(tid: number, regs: Buffer): void;
  getSigmask(tid: number): bigint;
  setSigmask(tid: number, mask: bigint): void;
  /** Waits for the thread's next ptrace stop (or its exit), up to `timeoutMs`. */
  waitStop(tid: number, timeoutMs: number): Promise<ThreadStop>;
}

const PTRACE_CONT = 7;
const PTRACE_SINGLESTEP = 9;
const PTRACE_GETREGS = 12;
const PTRACE_SETREGS = 13;
const PTRACE_DETACH = 17;
const PTRACE_SEIZE = 0x4206;
const PTRACE_INTERRUPT = 0x4207;
const PTRACE_GETSIGMASK = 0x420a;
const PTRACE_SETSIGMASK = 0x420b;
const PTRACE_O_SUSPEND_SECCOMP = 0x200000;
const WNOHANG = 1;
const WALL = 0x40000000;

/** struct user_regs_struct on x86_64: 27 registers of 8 bytes. */
export const X86_64_REGS_BYTES = 27 * 8;
/** Byte offsets of the registers the syscall injection reads and writes. */
export const X86_64_REG = { rax: 10 * 8, rdx: 12 * 8, rsi: 13 * 8, rdi: 14 * 8, origRax: 15 * 8, rip: 16 * 8, r10: 7 * 8, r8: 9 * 8, r9: 8 * 8 } as const;

/** Raised on machines where the agent does not know the register layout: only x86_64 is supported (as by the CUDA checkpoint API). */
export class UnsupportedArchitectureError extends KybernateError {
  constructor(arch: string) {
    super('UnsupportedArchitecture', `process memory control needs x86_64, this node is ${arch}`, { arch });
  }
}

let loaded: Ptrace | undefined;

/** libc's ptrace and waitpid through koffi; one instance per agent process. */
export function loadPtrace(): Ptrace {
  if (process.arch !== 'x64') throw new UnsupportedArchitectureError(process.arch);
  loaded ??= bindPtrace();
  return loaded;
}

function bindPtrace(): Ptrace {
  const libc = koffi.load('libc.so.6');
  // glibc declares ptrace variadic (request, ...): the argument types are given per call.
  const ptrace = libc.func('long ptrace(int request, ...)');
  const waitpid = libc.func('int waitpid(int pid, _Out_ int *status, int options)');
  const names: Record<number, string> = {
    [PTRACE_CONT]: 'CONT', [PTRACE_SINGLESTEP]: 'SINGLESTEP', [PTRACE_GETREGS]: 'GETREGS', [PTRACE_SETREGS]: 'SETREGS',
    [PTRACE_DETACH]: 'DETACH', [PTRACE_SEIZE]: 'SEIZE', [PTRACE_INTERRUPT]: 'INTERRUPT', [PTRACE_GETSIGMASK]: 'GETSIGMASK', [PTRACE_SETSIGMASK]: 'SETSIGMASK',
  };
  const checked = (request: number, tid: number, result: number): void => {
    if (result < 0) throw new PtraceError(names[request] ?? String(request), tid, koffi.errno());
  };
  const withValue = (request: number, tid: number, addr: bigint, data: bigint): void =>
    checked(request, tid, Number(ptrace(request, 'int', tid, 'uint64', addr, 'uint64', data)));
  const withBuffer = (request: number, tid: number, addr: bigint, data: Buffer): void =>
    checked(request, tid, Number(ptrace(request, 'int', tid, 'uint64', addr, 'void *', data)));

  return {
    seize: (tid, { suspendSeccomp }) => withValue(PTRACE_SEIZE, tid, 0n, suspendSeccomp ? BigInt(PTRACE_O_SUSPEND_SECCOMP) : 0n),
    interrupt: (tid) => withValue(PTRACE_INTERRUPT, tid, 0n, 0n),
    cont: (tid) => withValue(PTRACE_CONT, tid, 0n, 0n),
    singleStep: (tid) => withValue(PTRACE_SINGLESTEP, tid, 0n, 0n),
    detach: (tid, signal = 0) => withValue(PTRACE_DETACH, tid, 0n, BigInt(signal)),
    getRegs(tid) {
      const regs = Buffer.alloc(X86_64_REGS_BYTES);
      withBuffer(PTRACE_GETREGS, tid, 0n, regs);
      return regs;
    },
    setRegs: (tid, regs) => withBuffer(PTRACE_SETREGS, tid, 0n, regs),
    getSigmask(tid) {
      const mask = Buffer.alloc(8);
      withBuffer(PTRACE_GETSIGMASK, tid, 8n, mask);
      return mask.readBigUInt64LE();
    },
    setSigmask(tid, mask) {
      const buffer = Buffer.alloc(8);
      buffer.writeBigUInt64LE(mask);
      withBuffer(PTRACE_SETSIGMASK, tid, 8n, buffer);
    },
    async waitStop(tid, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      const status = [0];
      // Polled: a blocking waitpid would hold the event loop (and its timers) until the thread stops.
      for (let pause = 0; ; pause = Math.min(Math.max(1, pause * 2), 20)) {
        const result = waitpid(tid, status, WALL | WNOHANG) as number;
        if (result < 0) throw new PtraceError('waitpid', tid, koffi.errno());
        if (result === tid) {
          const value = status[0]!;
          if ((value & 0xff) === 0x7f) return { kind: 'stopped', signal: (value >> 8) & 0xff, event: (value >> 16) & 0xffff };
          return { kind: 'exited' };
        }
        if (performance.now() > deadline) throw new PtraceError('waitpid', tid, os.constants.errno.ETIMEDOUT, `no stop within ${timeoutMs} ms`);
        await sleep(pause);
      }
    },
  };
}
