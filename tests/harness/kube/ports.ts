import { freeLoopbackPort } from '../../support/wait.ts';
import { HarnessError } from './errors.ts';

const PORT_ATTEMPTS = 3;

/**
 * A free port can be taken by another process between our probe and the daemon's bind (other test
 * runs share this machine): retry with a new port when the daemon says so.
 */
export async function startOnFreePort<T>(start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(await freeLoopbackPort());
    } catch (err) {
      const portTaken = err instanceof HarnessError && /address already in use/.test(String(err.context.logTail));
      if (!portTaken || attempt === PORT_ATTEMPTS) throw err;
    }
  }
}
