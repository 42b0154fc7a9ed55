import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { stripResponseHopByHop } from './headers.ts';
import { endpointKey, type Endpoint } from './types.ts';

export interface PoolOptions {
  /** Most keep-alive connections per pod; further requests wait inside the pool. */
  readonly connectionsPerEndpoint: number;
  readonly keepAliveTimeoutMs: number;
}

/** One undici Pool (keep-alive connections) per pod address, closed when the pod leaves. */
export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly options: PoolOptions) {}

  get(endpoint: Endpoint): Pool {
    const key = endpointKey(endpoint);
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new Pool(`http://${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`, {
        connections: this.options.connectionsPerEndpoint,
        keepAliveTimeout: this.options.keepAliveTimeoutMs,
        // Inference calls and event streams may legitimately take minutes; the client decides when to give up.
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes the pools of addresses no longer in use; requests still running on them finish first. */
  retainOnly(keys: ReadonlySet<string>): void {
    for (const [key, pool] of this.pools) {
      if (keys.has(key)) continue;
      this.pools.delete(key);
      void pool.close();
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.close()));
  }
}

export interface ForwardResult {
  /** Status sent to the client; 0 when the exchange broke off before a status was sent. */
  readonly status: number;
  readonly error?: Error;
  /** Seconds until the upstream's response headers arrived (undefined when they never did). */
  readonly upstreamSeconds?: number;
}

export class ClientGoneError extends Error {
  constructor() {
    super('client closed the connection');
  }
}

/**
 * Streams one request to a pod and its response back, without buffering either body: response
 * chunks are written as they arrive (so SSE and chunked responses flush), a slow client pauses the
 * upstream (backpressure), and a client that hangs up aborts the upstream request.
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private settled = false;
  private readonly startedAt = performance.now();
  private upstreamSeconds: number | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly onDone: (result: ForwardResult) => void,
  ) {
    res.on('close', this.onClientClose);
  }

  private readonly onClientClose = (): void => {
    if (this.settled) return;
    // Before the pool dispatched us there is no controller yet: onRequestStart aborts then.
    this.controller?.abort(new ClientGoneError());
  };

  private readonly resume = (): void => {
    this.controller?.resume();
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new ClientGoneError());
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    // 1xx interim responses (100 Continue, 103 Early Hints) are not relayed; the final one follows.
    if (statusCode < 200) return;
    this.upstreamSeconds = (performance.now() - this.startedAt) / 1000;
    stripResponseHopByHop(headers);
    this.res.writeHead(statusCode, statusMessage, headers as Record<string, string | string[]>);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.resume);
    }
  }

  onResponseEnd(): void {
    this.res.end();
    this.settle({ status: this.res.statusCode, upstreamSeconds: this.upstreamSeconds });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (error instanceof ClientGoneError || this.res.destroyed) {
      this.settle({ status: 0, error, upstreamSeconds: this.upstreamSeconds });
      return;
    }
    if (!this.res.headersSent) {
      const body = `upstream request failed: ${error.message}\n`;
      this.res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      this.res.end(body);
      this.settle({ status: 502, error });
      return;
    }
    // Mid-body failure: the status already went out, so the only honest signal left is a cut connection.
    this.res.destroy(error);
    this.settle({ status: 0, error, upstreamSeconds: this.upstreamSeconds });
  }

  private settle(result: ForwardResult): void {
    if (this.settled) return;
    this.settled = true;
    this.res.off('close', this.onClientClose);
    this.onDone(result);
  }
}

export function forwardRequest(
  pool: Pool,
  req: IncomingMessage,
  res: ServerResponse,
  headers: string[],
  hasBody: boolean,
  onDone: (result: ForwardResult) => void,
): void {
  pool.dispatch(
    {
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: hasBody ? req : null,
    },
    new ResponseRelay(res, onDone),
  );
}
