import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { upstreamRequestHeaders, type ClientInfo } from './headers.ts';
import type { Endpoint } from './types.ts';

/** An Upgrade handshake needs these two, which are otherwise hop-by-hop. */
const UPGRADE_HEADERS: ReadonlySet<string> = new Set(['connection', 'upgrade']);

export interface TunnelResult {
  /** The upstream's handshake status (101 when upgraded), 502 when the pod could not be reached, 0 when cut. */
  readonly status: number;
  readonly error?: Error;
}

/**
 * Proxies an Upgrade request (WebSocket, or any other protocol) over raw sockets: the handshake is
 * rewritten like any request, then bytes are copied both ways until either side closes. Measured
 * cheaper and simpler than http-proxy's ws mode, and it carries any upgrade protocol, not just WebSocket.
 */
export function tunnelUpgrade(
  endpoint: Endpoint,
  req: IncomingMessage,
  clientSocket: Duplex,
  head: Buffer,
  client: ClientInfo,
  onClosed: (result: TunnelResult) => void,
): void {
  const { headers } = upstreamRequestHeaders(req.rawHeaders, client, UPGRADE_HEADERS);
  let handshake = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (let index = 0; index < headers.length; index += 2) handshake += `${headers[index]}: ${headers[index + 1]}\r\n`;
  handshake += '\r\n';

  let status = 0;
  let connected = false;
  let reported = false;
  const report = (error?: Error): void => {
    if (reported) return;
    reported = true;
    onClosed(error === undefined ? { status } : { status, error });
  };

  const upstream: Socket = connect({ host: endpoint.host, port: endpoint.port });
  upstream.setNoDelay(true);
  upstream.once('connect', () => {
    connected = true;
    upstream.write(handshake);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(clientSocket);
    clientSocket.pipe(upstream);
  });
  upstream.once('data', (chunk: Buffer) => {
    // "HTTP/1.1 101 ..." - the status is bytes 9-11 of the first line.
    const parsed = Number(chunk.subarray(9, 12).toString('latin1'));
    status = Number.isInteger(parsed) ? parsed : 0;
  });
  upstream.on('error', (error) => {
    if (!connected && !clientSocket.destroyed) {
      const body = `upstream connection failed: ${error.message}\n`;
      status = 502;
      clientSocket.end(
        `HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    } else {
      clientSocket.destroy();
    }
    report(error);
  });
  upstream.once('close', () => {
    clientSocket.destroy();
    report();
  });
  clientSocket.on('error', () => upstream.destroy());
  clientSocket.once('close', () => {
    upstream.destroy();
    report();
  });
}

/** Answers an Upgrade request that is not tunnelled (no route, queue full, timeout) and closes it. */
export function rejectUpgrade(socket: Duplex, status: number, reason: string, message: string, extraHeaders = ''): void {
  if (socket.destroyed) return;
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extraHeaders}connection: close\r\n\r\n${body}`,
  );
}
