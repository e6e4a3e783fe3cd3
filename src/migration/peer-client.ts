// The source daemon's client for the destination daemon's API: JSON over HTTP,
// or HTTPS for an https:// URL (the peer verified against --tls-ca, this host's
// certificate presented), with the first peer token. A refusal comes back as MigrationFailed carrying the
// destination's own status, code and words; a lost connection as PeerUnreachable,
// which callers must treat as "outcome unknown", never as "it failed".
import { createReadStream } from "node:fs";
import type { IncomingMessage } from "node:http";
import { MigrationFailed } from "../errors.js";
import { describeTransportError, transportFor, type ClientTls, type Transport } from "../tls/client-transport.js";
import type { HostContext } from "../vm/host-context.js";

export class PeerUnreachable extends Error {}

export interface PeerReply<T> {
  status: number;
  body: T;
}

export class PeerClient {
  private readonly base: URL;
  private readonly transport: Transport;

  constructor(
    baseUrl: string,
    private readonly token: string | undefined,
    tls?: ClientTls,
  ) {
    this.base = new URL(baseUrl);
    this.transport = transportFor(this.base, tls);
  }

  /** A client of `baseUrl` with this host's credentials: the first peer token (the one it sends), its TLS files as now loaded. */
  static of(host: { config: Pick<HostContext["config"], "peerTokens">; tls?: HostContext["tls"] }, baseUrl: string): PeerClient {
    return new PeerClient(baseUrl, host.config.peerTokens[0], host.tls?.clientOptions());
  }

  get url(): string {
    return this.base.origin;
  }

  /** Any reply (status and parsed body); throws PeerUnreachable when there is none. */
  request<T = unknown>(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<PeerReply<T>> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (payload) Object.assign(headers, { "content-type": "application/json", "content-length": payload.length });
    return new Promise((resolve, reject) => {
      const req = this.transport.request(
        { ...this.transport.options, method, path, headers, agent: false, timeout: timeoutMs },
        (res) => readReply(res, resolve, reject),
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", (err) => reject(new PeerUnreachable(`${this.url}: ${describeTransportError(err)}`)));
      req.end(payload);
    });
  }

  /**
   * Streams `file` (`size` bytes) as the body of a PUT: a snapshot layer sent to
   * the destination. Answers as `request` does; no timeout while bytes flow.
   */
  upload<T = unknown>(path: string, file: string, size: number, idleMs = 30_000): Promise<PeerReply<T>> {
    const headers: Record<string, string | number> = { "content-type": "application/octet-stream", "content-length": size };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return new Promise((resolve, reject) => {
      const req = this.transport.request({ ...this.transport.options, method: "PUT", path, headers, agent: false, timeout: idleMs }, (res) =>
        readReply(res, resolve, reject),
      );
      req.on("timeout", () => req.destroy(new Error(`no progress within ${idleMs} ms`)));
      req.on("error", (err) => reject(new PeerUnreachable(`${this.url}: ${describeTransportError(err)}`)));
      const stream = createReadStream(file);
      stream.on("error", (err) => req.destroy(err));
      stream.pipe(req);
    });
  }

  /** A request that must succeed with `want`; a refusal becomes MigrationFailed naming the destination's reason. */
  async expect<T = unknown>(want: number, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const r = await this.request<T>(method, path, body, timeoutMs);
    if (r.status !== want) {
      const p = r.body as { code?: string; detail?: string } | string | undefined;
      const detail = typeof p === "object" && p ? `${p.detail ?? ""} (${p.code ?? r.status})` : String(p ?? "").slice(0, 300);
      throw new MigrationFailed(`destination ${this.url} refused ${method} ${path}: HTTP ${r.status}: ${detail}`, {
        destinationStatus: r.status,
        destinationCode: typeof p === "object" && p ? p.code : undefined,
      });
    }
    return r.body;
  }
}

/** The status and parsed body of an answer (its text when not JSON). */
function readReply<T>(res: IncomingMessage, resolve: (r: PeerReply<T>) => void, reject: (e: Error) => void): void {
  const chunks: Buffer[] = [];
  res.on("data", (c: Buffer) => chunks.push(c));
  res.on("end", () => {
    const text = Buffer.concat(chunks).toString("utf8");
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text for the message
    }
    resolve({ status: res.statusCode ?? 0, body: parsed as T });
  });
  res.on("error", (err) => reject(new PeerUnreachable(err.message)));
}
