/**
 * The benchmark's upstream: answers every request with a short body, after `delayMs` (0: at once,
 * the trivial upstream; 10: a small inference call); with `--ws` it also echoes WebSocket messages.
 * Prints {"port": N} when listening.
 */
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const delayMs = Number(process.argv[2] ?? '0');
const body = Buffer.from('ok\n');
const server = createServer((_req, res) => {
  const answer = (): void => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  };
  if (delayMs > 0) setTimeout(answer, delayMs);
  else answer();
});
server.keepAliveTimeout = 65_000;
if (process.argv.includes('--ws')) {
  new WebSocketServer({ server }).on('connection', (socket) => socket.on('message', (data) => socket.send(data)));
}
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('upstream: no TCP address');
  console.log(JSON.stringify({ port: address.port }));
});
