/**
 * The activator under benchmark, in its own process like in production: two static workloads on
 * the given upstream, `bench.local` ready and `held.local` suspended. Over IPC the runner asks for
 * the held queue depth ({"query": "queued"}) and resumes the suspended workload ({"resume": true},
 * answered with the time it happened). Prints {"port": N} when listening.
 */
import { createLogger } from '../../src/lib/log.ts';
import { Activator } from '../../src/activator/activator.ts';
import { DEFAULT_PROBE_RULES } from '../../src/activator/probes.ts';
import { StaticWorkloadSource } from '../../src/activator/sources/static-source.ts';

const upstream = process.argv[2];
if (upstream === undefined) throw new Error('usage: activator-proc.ts <upstream host:port>');

const source = new StaticWorkloadSource({
  workloads: [
    { name: 'bench', hosts: ['bench.local'], endpoints: [upstream] },
    { name: 'held', hosts: ['held.local'], endpoints: [upstream], suspended: true, activationTimeout: '120s' },
  ],
});
const activator = new Activator({
  source,
  trigger: { requestActivation: async () => undefined },
  log: createLogger('activator-bench', { level: 'warn' }),
  probes: DEFAULT_PROBE_RULES,
  pools: { connectionsPerEndpoint: 256, keepAliveTimeoutMs: 60_000 },
});
await activator.start();

process.on('message', (message: { query?: string; resume?: boolean }) => {
  if (message.query === 'queued') {
    const held = activator.activity().find((workload) => workload.name === 'held');
    process.send?.({ queued: held?.queued ?? 0 });
  } else if (message.resume === true) {
    const at = performance.timeOrigin + performance.now();
    source.setSuspended('default/held', false);
    process.send?.({ resumedAt: at });
  }
});

activator.server.listen(0, '127.0.0.1', () => {
  const address = activator.server.address();
  if (address === null || typeof address === 'string') throw new Error('activator: no TCP address');
  console.log(JSON.stringify({ port: address.port }));
});
