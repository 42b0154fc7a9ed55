import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `probe` every 100 ms until it returns a value; an error thrown by the probe ends the wait. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** The counter's output: one number a line (a line cut off mid-write is left out). */
export function numbersIn(text: string): number[] {
  const lines = text.split('\n');
  if (!text.endsWith('\n')) lines.pop();
  return lines
    .filter((line) => /^\d+$/.test(line.trim()))
    .map(Number);
}

/** A loopback port free right now (for servers that cannot bind port 0 themselves, like busybox httpd). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
