import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ClientGoneError, forwardRequest, type ForwardResult } from './forwarder.ts';
import { upstreamRequestHeaders, type ClientInfo } from './headers.ts';
import { rejectUpgrade, tunnelUpgrade, type TunnelResult } from './tunnel.ts';
import { RETRY_AFTER_SECONDS, type HeldExchange, type Target, type WorkloadRuntime } from './workload-runtime.ts';

const REASONS: Record<number, string> = { 404: 'Not Found', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/** A plain-text error answer; every error the activator produces says what happened and to which workload. */
export function sendError(res: ServerResponse, status: number, message: string, retryAfterSeconds?: number): void {
  if (res.headersSent || res.destroyed) return;
  const body = `${message}\n`;
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  };
  if (retryAfterSeconds !== undefined) headers['retry-after'] = retryAfterSeconds;
  res.writeHead(status, headers);
  res.end(body);
}

export function clientInfo(req: IncomingMessage): ClientInfo {
  return { remoteAddress: req.socket.remoteAddress ?? 'unknown', protocol: 'http' };
}

/** Called once per exchange when it is over, whatever the outcome: the activator's drain counts on it. */
export type ExchangeDone = () => void;

/**
 * One request through the activator, HTTP or Upgrade: forwarded at once when a pod has a free slot,
 * otherwise held until released (then forwarded) or rejected (503/504), or dropped from the queue
 * when its client goes away while held.
 */
abstract class Exchange implements HeldExchange {
  private ticket: number | undefined;

  constructor(
    protected readonly runtime: WorkloadRuntime,
    /** Emits 'close' when the client goes away. */
    private readonly clientSide: NodeJS.EventEmitter,
    private readonly done: ExchangeDone,
  ) {}

  admit(): void {
    const target = this.runtime.acquire();
    if (target !== undefined) {
      this.forward(target);
      return;
    }
    const entry = this.runtime.hold(this);
    if (entry === undefined) {
      this.reject(503, `workload ${this.runtime.key}: too many requests waiting (queue size ${this.runtime.config.queueSize})`, RETRY_AFTER_SECONDS);
      return;
    }
    this.ticket = entry.ticket;
    this.clientSide.once('close', this.onClosedWhileHeld);
  }

  private readonly onClosedWhileHeld = (): void => {
    if (this.ticket !== undefined && this.runtime.cancel(this.ticket)) {
      this.runtime.log.debug({ ticket: this.ticket }, 'client went away while held');
      this.runtime.metrics.countResponse(0);
      this.done();
    }
    this.ticket = undefined;
  };

  private leaveQueue(): void {
    if (this.ticket === undefined) return;
    this.clientSide.off('close', this.onClosedWhileHeld);
    this.ticket = undefined;
  }

  start(target: Target): void {
    this.leaveQueue();
    this.forward(target);
  }

  reject(status: number, message: string, retryAfterSeconds?: number): void {
    this.leaveQueue();
    this.answer(status, message, retryAfterSeconds);
    this.runtime.metrics.countResponse(status);
    this.done();
  }

  /** The forwarded exchange is over: free the pod's slot, count it, and tell the activator. */
  protected finish(target: Target, status: number, error: Error | undefined): void {
    this.runtime.complete(target);
    this.runtime.metrics.countResponse(status);
    if (status === 502) {
      this.runtime.log.warn({ pod: target.endpoint.pod, endpoint: target.key, err: error }, 'upstream request failed');
    } else if (error !== undefined && !(error instanceof ClientGoneError)) {
      this.runtime.log.warn({ pod: target.endpoint.pod, endpoint: target.key, status, err: error }, 'exchange broke off after the response started; client connection cut');
    }
    this.done();
  }

  protected abstract forward(target: Target): void;
  protected abstract answer(status: number, message: string, retryAfterSeconds?: number): void;
}

export class HttpExchange extends Exchange {
  constructor(
    runtime: WorkloadRuntime,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    done: ExchangeDone,
  ) {
    super(runtime, res, done);
  }

  protected forward(target: Target): void {
    const { headers, hasBody } = upstreamRequestHeaders(this.req.rawHeaders, clientInfo(this.req));
    forwardRequest(target.pool, this.req, this.res, headers, hasBody, (result: ForwardResult) => {
      if (result.upstreamSeconds !== undefined) this.runtime.metrics.upstreamSeconds.observe(result.upstreamSeconds);
      this.finish(target, result.status, result.error);
    });
  }

  protected answer(status: number, message: string, retryAfterSeconds?: number): void {
    sendError(this.res, status, message, retryAfterSeconds);
  }
}

export class UpgradeExchange extends Exchange {
  constructor(
    runtime: WorkloadRuntime,
    private readonly req: IncomingMessage,
    private readonly socket: Duplex,
    private readonly head: Buffer,
    done: ExchangeDone,
  ) {
    super(runtime, socket, done);
  }

  protected forward(target: Target): void {
    tunnelUpgrade(target.endpoint, this.req, this.socket, this.head, clientInfo(this.req), (result: TunnelResult) => {
      this.finish(target, result.status, result.error);
    });
  }

  protected answer(status: number, message: string, retryAfterSeconds?: number): void {
    const extra = retryAfterSeconds === undefined ? '' : `retry-after: ${retryAfterSeconds}\r\n`;
    rejectUpgrade(this.socket, status, REASONS[status] ?? 'Error', message, extra);
  }
}
