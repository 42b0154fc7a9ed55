/**
 * A raw API client for the harness's own tests, on undici with the admin certificate: JSON calls and a
 * watch stream read line by line, so the tests see exactly what the server sends.
 */
import { Agent, request } from 'undici';
import type { ControlPlane } from '../harness/kube/index.ts';

interface ObjectBody {
  metadata?: { name?: string; resourceVersion?: string };
  /** Lists only. */
  items?: ObjectBody[];
  /** A Status object (the payload of a watch ERROR event). */
  code?: number;
  reason?: string;
  [key: string]: unknown;
}

export interface ApiResponse {
  status: number;
  body: ObjectBody;
}

export interface WatchEvent {
  type: string;
  name: string | undefined;
  resourceVersion: string | undefined;
  /** ERROR events: the Status the server sent. */
  status?: { code: number | undefined; reason: string | undefined };
}

export interface OpenWatch {
  events: WatchEvent[];
  /** Set once the server ended the stream (`err` undefined) or the connection failed. */
  ended(): { err: unknown } | undefined;
  abort(): void;
}

export function apiClient(plane: ControlPlane) {
  const dispatcher = new Agent({ connect: plane.tls });

  async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<ApiResponse> {
    const response = await request(new URL(path, plane.server), {
      method,
      dispatcher,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.statusCode, body: (await response.body.json()) as ObjectBody };
  }

  async function watch(path: string, resourceVersion: string | undefined): Promise<OpenWatch> {
    const events: WatchEvent[] = [];
    const controller = new AbortController();
    let ended: { err: unknown } | undefined;
    const query = new URLSearchParams({ watch: 'true', ...(resourceVersion ? { resourceVersion } : {}) });
    const response = await request(new URL(`${path}?${query}`, plane.server), { dispatcher, signal: controller.signal });
    if (response.statusCode !== 200) throw new Error(`watch ${path}: HTTP ${response.statusCode}: ${await response.body.text()}`);
    void (async () => {
      let buffered = '';
      try {
        for await (const chunk of response.body) {
          buffered += chunk.toString();
          let newline: number;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            const { type, object } = JSON.parse(buffered.slice(0, newline)) as { type: string; object: ObjectBody };
            buffered = buffered.slice(newline + 1);
            const { name, resourceVersion } = object.metadata ?? {};
            events.push(
              type === 'ERROR'
                ? { type, name, resourceVersion, status: { code: object.code, reason: object.reason } }
                : { type, name, resourceVersion },
            );
          }
        }
        ended = { err: undefined };
      } catch (err) {
        ended = { err };
      }
    })();
    return { events, ended: () => ended, abort: () => controller.abort() };
  }

  return { call, watch, close: () => dispatcher.close() };
}
