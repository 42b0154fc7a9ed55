/**
 * The baseline: a minimal `http-proxy` reverse proxy with a keep-alive agent; with `--ws` it also
 * proxies WebSocket upgrades. Prints {"port": N}.
 */
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const target = process.argv[2];
if (target === undefined) throw new Error('usage: http-proxy-proc.ts <target url>');
const proxy = httpProxy.createProxyServer({ target, agent: new Agent({ keepAlive: true, maxSockets: 256 }) });
proxy.on('error', (_error, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = createServer((req, res) => proxy.web(req, res));
if (process.argv.includes('--ws')) server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('http-proxy: no TCP address');
  console.log(JSON.stringify({ port: address.port }));
});
