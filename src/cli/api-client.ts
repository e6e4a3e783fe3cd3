// A small client for the daemon's API: over its Unix socket by default, or a
// base URL (http://, or https:// verified against a CA). Problem responses become
// ApiError with the daemon's code and detail.
import http from "node:http";
import { describeTransportError, transportFor, type ClientTls } from "../tls/client-transport.js";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
  ) {
    super(detail);
  }
}

export interface ApiTarget {
  socketPath?: string;
  url?: string;
  /** Sent as `Authorization: Bearer` (the daemon requires it over TCP). */
  token?: string;
  /** For an https:// url: the CA to verify the daemon against, and a client certificate. */
  tls?: ClientTls;
}

export interface ApiResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export class ApiClient {
  constructor(private readonly target: ApiTarget) {}

  request(method: string, path: string, body?: unknown, timeoutMs = 0): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const base = this.target.url ? new URL(this.target.url) : undefined;
    const transport = base ? transportFor(base, this.target.tls) : { request: http.request, options: { socketPath: this.target.socketPath } };
    const options: http.RequestOptions = {
      method,
      path: base ? new URL(path, base).pathname + new URL(path, base).search : path,
      headers: {
        ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
        ...(this.target.token ? { authorization: `Bearer ${this.target.token}` } : {}),
      },
      // Node's global agent times idle sockets out after 5 s; a shutdown may take a minute.
      agent: false,
      ...transport.options,
      ...(timeoutMs ? { timeout: timeoutMs } : {}),
    };
    return new Promise((resolve, reject) => {
      const req = transport.request(options, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      });
      if (timeoutMs) req.on("timeout", () => req.destroy(new Error(`no answer from the daemon within ${timeoutMs} ms`)));
      req.on("error", (err) => reject(new Error(`cannot reach vmhostd at ${this.describe()}: ${describeTransportError(err)}`)));
      req.end(payload);
    });
  }

  /** A JSON request that throws ApiError on any 4xx/5xx. */
  async json<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body);
    const text = res.body.toString("utf8");
    if (res.status >= 400) {
      let problem: { code?: string; detail?: string } = {};
      try {
        problem = JSON.parse(text) as typeof problem;
      } catch {
        // not a problem document; fall through with the raw text
      }
      throw new ApiError(res.status, problem.code ?? `HTTP_${res.status}`, problem.detail ?? text);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  describe(): string {
    return this.target.url ?? this.target.socketPath ?? "?";
  }
}
