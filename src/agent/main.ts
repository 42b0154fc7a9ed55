import { errorMessage } from '../lib/errors.ts';
import { createLogger } from '../lib/log.ts';
import { parseAgentConfig } from './config.ts';
import { startAgent } from './start.ts';

const log = createLogger('agent');
try {
  const running = await startAgent(parseAgentConfig(process.env, process.argv.slice(2)), log);
  const shutdown = (signal: string): void => {
    log.info({ signal }, 'agent stopping');
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: errorMessage(err) }, 'agent stop failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
} catch (err) {
  log.fatal({ err: errorMessage(err) }, 'agent could not start');
  process.exit(1);
}
