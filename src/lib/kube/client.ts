import http from 'node:http';
import https from 'node:https';
import { createInterface } from 'node:readline';
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { KybernateError, UnavailableError, errorMessage } from '../errors.ts';
import type { KubeConnection } from './kubeconfig.ts';
import { resourcePath, type ResourceType } from './resources.ts';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: V1ObjectMeta;
}

export interface KubeList<T> {
  items: T[];
  metadata: { resourceVersion?: string; continue?: string };
}

export interface ListOptions {
  labelSelector?: string;
  limit?: number;
  continue?: string;
}

export interface WatchOptions {
  resourceVersion: string;
  labelSelector?: string;
  /** The server ends the watch after this long; the informer then watches again from where it was. */
  timeoutSeconds: number;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
export interface WatchEvent<T> {
  type: WatchEventType;
  object: T;
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  /** Delete only this incarnation of the object (by uid) / this version (by resourceVersion). */
  preconditions?: { uid?: string; resourceVersion?: string };
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
}

/** The API server calls the controller makes. Writes carry metadata.resourceVersion when given: 409 on conflict. */
export interface KubeClient {
  get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T>;
  list<T extends KubeObject>(type: ResourceType, namespace: string | undefined, options?: ListOptions): Promise<KubeList<T>>;
  create<T extends KubeObject>(type: ResourceType, object: T): Promise<T>;
  replace<T extends KubeObject>(type: ResourceType, object: T): Promise<T>;
  replaceStatus<T extends KubeObject>(type: ResourceType, object: T): Promise<T>;
  /** JSON merge patch (RFC 7386); include metadata.resourceVersion in the patch for optimistic concurrency. */
  mergePatch<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, patch: object, subresource?: 'status'): Promise<T>;
  delete(type: ResourceType, namespace: string | undefined, name: string, options?: DeleteOptions): Promise<void>;
  /** Streams events until the server ends the watch (resolves) or it fails (rejects); stops when `signal` aborts. */
  watch<T extends KubeObject>(type: ResourceType, namespace: string | undefined, options: WatchOptions, onEvent: (event: WatchEvent<T>) => void, signal: AbortSignal): Promise<void>;
}

/** An error status from the API server; `code` is its reason (Conflict, NotFound, AlreadyExists, Expired, ...). */
export class KubeApiError extends KybernateError {
  constructor(
    readonly statusCode: number,
    reason: string,
    message: string,
    context: Record<string, unknown>,
  ) {
    super(reason || `HTTP${statusCode}`, message, { ...context, statusCode });
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.statusCode === 404;
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.statusCode === 409 && err.code !== 'AlreadyExists';
export const isAlreadyExists = (err: unknown): boolean => err instanceof KubeApiError && err.code === 'AlreadyExists';
/** The resourceVersion a list or watch asked for is compacted away: list again. */
export const isGone = (err: unknown): boolean => err instanceof KubeApiError && (err.statusCode === 410 || err.code === 'Expired' || err.code === 'Gone');

/** The object, or undefined when it does not exist. */
export async function getOptional<T extends KubeObject>(kube: KubeClient, type: ResourceType, namespace: string | undefined, name: string): Promise<T | undefined> {
  try {
    return await kube.get<T>(type, namespace, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

const FIELD_MANAGER = 'kybernate-controller';
/** Extra time on top of a watch's timeoutSeconds before a silent connection counts as dead. */
const WATCH_GRACE_MS = 30_000;

/** KubeClient over the API server's REST interface, authenticated as the connection says. */
export class HttpKubeClient implements KubeClient {
  private readonly server: URL;
  private readonly agent: http.Agent;

  constructor(private readonly connection: KubeConnection) {
    this.server = connection.server;
    this.agent =
      this.server.protocol === 'https:'
        ? new https.Agent({
            keepAlive: true,
            ca: connection.ca,
            cert: connection.cert,
            key: connection.key,
            rejectUnauthorized: !connection.insecureSkipTlsVerify,
            servername: connection.tlsServerName,
          })
        : new http.Agent({ keepAlive: true });
  }

  get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    return this.json<T>('GET', resourcePath(type, namespace, name));
  }

  list<T extends KubeObject>(type: ResourceType, namespace: string | undefined, options: ListOptions = {}): Promise<KubeList<T>> {
    return this.json<KubeList<T>>('GET', withQuery(resourcePath(type, namespace), { ...options }));
  }

  create<T extends KubeObject>(type: ResourceType, object: T): Promise<T> {
    return this.json<T>('POST', withQuery(resourcePath(type, object.metadata?.namespace), { fieldManager: FIELD_MANAGER }), object);
  }

  replace<T extends KubeObject>(type: ResourceType, object: T): Promise<T> {
    return this.json<T>('PUT', withQuery(objectPath(type, object), { fieldManager: FIELD_MANAGER }), object);
  }

  replaceStatus<T extends KubeObject>(type: ResourceType, object: T): Promise<T> {
    return this.json<T>('PUT', withQuery(objectPath(type, object, 'status'), { fieldManager: FIELD_MANAGER }), object);
  }

  mergePatch<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, patch: object, subresource?: 'status'): Promise<T> {
    const path = withQuery(resourcePath(type, namespace, name, subresource), { fieldManager: FIELD_MANAGER });
    return this.json<T>('PATCH', path, patch, 'application/merge-patch+json');
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string, options: DeleteOptions = {}): Promise<void> {
    await this.json('DELETE', resourcePath(type, namespace, name), { apiVersion: 'v1', kind: 'DeleteOptions', ...options });
  }

  async watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    options: WatchOptions,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const path = withQuery(resourcePath(type, namespace), {
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: options.resourceVersion,
      timeoutSeconds: options.timeoutSeconds,
      labelSelector: options.labelSelector,
    });
    const response = await this.send('GET', path, undefined, undefined, signal);
    if (!response) return; // aborted
    if (response.statusCode !== 200) throw await apiError(response, 'GET', path);
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        signal.removeEventListener('abort', onAbort);
        response.destroy();
        if (err) reject(err instanceof KybernateError ? err : new UnavailableError(`watch ${path} broke: ${errorMessage(err)}`, { path }, { cause: err }));
        else resolve();
      };
      const onAbort = () => finish();
      signal.addEventListener('abort', onAbort, { once: true });
      // A half-open connection (API server host gone) sends nothing and never ends: give up after the timeout.
      const deadline = setTimeout(() => finish(new Error('no end of watch from the API server')), options.timeoutSeconds * 1000 + WATCH_GRACE_MS);
      const lines = createInterface({ input: response, crlfDelay: Infinity });
      lines.on('line', (line) => {
        if (settled || line.trim() === '') return;
        let event: { type: string; object: unknown };
        try {
          event = JSON.parse(line) as { type: string; object: unknown };
        } catch (err) {
          return finish(new UnavailableError(`watch ${path}: unparsable event`, { path }, { cause: err }));
        }
        if (event.type === 'ERROR') {
          const status = event.object as { code?: number; reason?: string; message?: string };
          return finish(new KubeApiError(status.code ?? 500, status.reason ?? '', status.message ?? 'watch error', { path }));
        }
        try {
          onEvent(event as WatchEvent<T>);
        } catch (err) {
          finish(err);
        }
      });
      // The server closes a watch at timeoutSeconds ('end'); a reset before that is an error.
      response.on('end', () => finish());
      response.on('error', (err) => finish(err));
      response.on('aborted', () => finish(new Error('connection aborted')));
      response.on('close', () => finish(response.complete ? undefined : new Error('connection closed')));
    });
  }

  private async json<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const response = await this.send(method, path, body, contentType);
    if (!response) throw new UnavailableError(`${method} ${path} aborted`, { method, path });
    if (response.statusCode === undefined || response.statusCode >= 300) throw await apiError(response, method, path);
    const text = await readBody(response);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /** Resolves with the response (body unread), or undefined when `signal` aborted first. */
  private async send(method: string, path: string, body: unknown, contentType = 'application/json', signal?: AbortSignal): Promise<http.IncomingMessage | undefined> {
    const token = this.connection.token?.();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const request = (this.server.protocol === 'https:' ? https.request : http.request)({
      agent: this.agent,
      protocol: this.server.protocol,
      hostname: this.server.hostname,
      port: this.server.port,
      method,
      path: `${this.server.pathname.replace(/\/$/, '')}${path}`,
      headers: {
        accept: 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(payload === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }),
      },
    });
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return resolve(undefined);
      const onAbort = () => {
        request.destroy();
        resolve(undefined);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      request.on('response', (response) => {
        signal?.removeEventListener('abort', onAbort);
        // Readers see a reset through their own listeners or iteration; this one only keeps a reset that
        // comes after the reader is done (API server restart) from being an uncaught exception.
        response.on('error', () => {});
        resolve(response);
      });
      request.on('error', (err) => {
        signal?.removeEventListener('abort', onAbort);
        reject(new UnavailableError(`${method} ${path}: API server unreachable: ${err.message}`, { method, path }, { cause: err }));
      });
      request.end(payload);
    });
  }
}

function objectPath(type: ResourceType, object: KubeObject, subresource?: string): string {
  const name = object.metadata?.name;
  if (!name) throw new KybernateError('InvalidInput', `${type.kind} without metadata.name`, { kind: type.kind });
  return resourcePath(type, object.metadata?.namespace, name, subresource);
}

function withQuery(path: string, query: Record<string, string | number | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== '') params.set(key, String(value));
  const text = params.toString();
  return text === '' ? path : `${path}?${text}`;
}

async function readBody(response: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function apiError(response: http.IncomingMessage, method: string, path: string): Promise<KubeApiError> {
  const text = await readBody(response).catch(() => '');
  let status: { reason?: string; message?: string } = {};
  try {
    status = JSON.parse(text) as typeof status;
  } catch {
    // Not a metav1.Status (e.g. a proxy's HTML page): keep the raw text as the message.
  }
  const code = response.statusCode ?? 0;
  return new KubeApiError(code, status.reason ?? '', `${method} ${path}: ${code} ${status.message ?? text.slice(0, 200)}`, { method, path });
}
