/** A 100 MB upload is streamed through the activator (in its own process) with bounded memory. */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { request } from 'undici';
import { startBackend, type Backend } from './harness.ts';

const UPLOAD_BYTES = 100 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

let child: ChildProcess | undefined;
let backend: Backend | undefined;
afterAll(async () => {
  child?.kill();
  await backend?.close();
});

function ask<T>(message: object): Promise<T> {
  const reply = once(child!, 'message') as Promise<[T]>;
  child!.send(message);
  return reply.then(([value]) => value);
}

it('streams a 100 MB upload to the pod with activator memory far below the upload size', async () => {
  backend = await startBackend((req, res) => {
    let received = 0;
    req.on('data', (chunk: Buffer) => (received += chunk.length));
    req.on('end', () => res.end(String(received)));
  });
  child = fork(fileURLToPath(new URL('./fixtures/activator-child.ts', import.meta.url)), [backend.address], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const { port } = JSON.parse(line.toString()) as { port: number };
  await ask({ sample: 'start' });

  let sent = 0;
  const body = Readable.from(
    (function* () {
      while (sent < UPLOAD_BYTES) {
        sent += CHUNK.length;
        yield CHUNK;
      }
    })(),
  );
  const response = await request(`http://127.0.0.1:${port}/upload`, { method: 'POST', body, headers: { host: 'big.test', 'content-type': 'application/octet-stream' } });
  expect(response.statusCode).toBe(200);
  expect(Number(await response.body.text())).toBe(UPLOAD_BYTES);

  const memory = await ask<{ baselineRss: number; peakRss: number; baselineHeld: number; peakHeld: number }>({ sample: 'report' });
  const rssGrowthMb = (memory.peakRss - memory.baselineRss) / 1024 / 1024;
  const heldGrowthMb = (memory.peakHeld - memory.baselineHeld) / 1024 / 1024;
  console.log(`100 MB upload: activator RSS growth ${rssGrowthMb.toFixed(1)} MB, live heap + Buffers growth ${heldGrowthMb.toFixed(1)} MB`);
  // Buffered, the body would add 100 MB to both; streamed, the activator holds a few chunks at a time.
  expect(heldGrowthMb).toBeLessThan(16);
  expect(rssGrowthMb).toBeLessThan(32);
});
