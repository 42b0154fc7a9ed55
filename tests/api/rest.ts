/**
 * The few raw API server calls the API tests make: status codes and Status messages as the server
 * sends them (what a user of kubectl sees), plus content types a generated client does not offer
 * (Table for printer columns, the published OpenAPI v3 document).
 */
import { request } from 'node:https';

export interface RestResponse {
  status: number;
  body: Record<string, unknown>;
}

export interface RestClient {
  call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, accept?: string): Promise<RestResponse>;
}

export interface ClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export function restClient(server: string, tls: ClientTls): RestClient {
  return {
    call(method, path, body, accept = 'application/json') {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const req = request(
          new URL(path, server),
          { method, ...tls, headers: { accept, ...(payload ? { 'content-type': 'application/json' } : {}) } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              try {
                resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
              } catch (err) {
                reject(new Error(`${method} ${path}: ${res.statusCode} with a non-JSON body: ${text.slice(0, 500)}`, { cause: err }));
              }
            });
          },
        );
        req.once('error', reject);
        req.end(payload);
      });
    },
  };
}
