// This host's TLS credentials: its certificate and key (the TCP API's server
// certificate, and its client certificate towards peers) and the CA bundle that
// client and peer certificates must chain to. Read at start, where a missing or
// mismatched file stops the daemon naming the setting, and again on SIGHUP: the
// listening servers get the new context for new connections, while connections
// already open keep theirs; a bad file at reload is logged and the old context kept.
import { readFile } from "node:fs/promises";
import type { Server as TlsServer } from "node:tls";
import { createSecureContext, type SecureContextOptions } from "node:tls";

export interface TlsPaths {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** The PEM texts of one reading. */
export interface TlsMaterial {
  cert: string;
  key: string;
  /** A bundle of one or more CA certificates (several during a CA rotation). */
  ca?: string;
}

/** A file that cannot be read or does not hold what its setting needs. */
export class TlsFileRefused extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(message);
    this.name = "TlsFileRefused";
  }
}

const SETTINGS = { cert: "--tls-cert (VMHOSTD_TLS_CERT)", key: "--tls-key (VMHOSTD_TLS_KEY)", ca: "--tls-ca (VMHOSTD_TLS_CA)" } as const;

export class TlsFiles {
  private readonly servers = new Set<TlsServer>();

  private constructor(
    private readonly paths: Required<Pick<TlsPaths, "tlsCert" | "tlsKey">> & Pick<TlsPaths, "tlsCa">,
    private material: TlsMaterial,
  ) {}

  /** Undefined without --tls-cert (plain HTTP). */
  static async load(paths: TlsPaths): Promise<TlsFiles | undefined> {
    if (!paths.tlsCert || !paths.tlsKey) return undefined;
    const p = { tlsCert: paths.tlsCert, tlsKey: paths.tlsKey, tlsCa: paths.tlsCa };
    return new TlsFiles(p, await readMaterial(p));
  }

  /** Whether clients must present a certificate (--tls-ca given). */
  get verifiesClients(): boolean {
    return this.material.ca !== undefined;
  }

  /**
   * Options for https.createServer: the credentials and, with a CA, a client
   * certificate asked for. The handshake does not refuse a connection without
   * one: a customer's browser opening a console ticket has none. Every other
   * request is refused at the HTTP layer unless the certificate verified
   * (src/http/peer-auth.ts), before its token is even looked at.
   */
  serverOptions(): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
    return { ...this.material, requestCert: this.verifiesClients, rejectUnauthorized: false };
  }

  /** What this daemon presents to and expects of a peer it calls. */
  clientOptions(): TlsMaterial {
    return { ...this.material };
  }

  /** Serves `server` with the current credentials from now on, and the reloaded ones after each reload. */
  attach(server: TlsServer): void {
    this.servers.add(server);
    server.once("close", () => this.servers.delete(server));
  }

  /** Reads the files again; on success every attached server uses them for new connections. Throws TlsFileRefused otherwise. */
  async reload(): Promise<void> {
    const next = await readMaterial(this.paths);
    this.material = next;
    for (const s of this.servers) s.setSecureContext(this.serverOptions());
  }
}

async function readMaterial(paths: { tlsCert: string; tlsKey: string; tlsCa?: string }): Promise<TlsMaterial> {
  const read = async (file: string, setting: string, label: string): Promise<string> => {
    const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new TlsFileRefused(setting, `cannot read ${file}: ${err.code ?? err.message}`);
    });
    if (!text.includes(`-----BEGIN ${label}`)) throw new TlsFileRefused(setting, `${file} holds no PEM ${label.toLowerCase()}`);
    return text;
  };
  const [cert, key, ca] = await Promise.all([
    read(paths.tlsCert, SETTINGS.cert, "CERTIFICATE"),
    // "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY" all contain it after BEGIN.
    readFile(paths.tlsKey, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new TlsFileRefused(SETTINGS.key, `cannot read ${paths.tlsKey}: ${err.code ?? err.message}`);
    }),
    paths.tlsCa ? read(paths.tlsCa, SETTINGS.ca, "CERTIFICATE") : Promise.resolve(undefined),
  ]);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) throw new TlsFileRefused(SETTINGS.key, `${paths.tlsKey} holds no PEM private key`);
  try {
    // Fails on a key that is not the certificate's, or a PEM that does not parse.
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
  } catch (err) {
    throw new TlsFileRefused(`${SETTINGS.cert} / ${SETTINGS.key}`, `cannot use ${paths.tlsCert} with ${paths.tlsKey}: ${(err as Error).message}`);
  }
  return { cert, key, ...(ca ? { ca } : {}) };
}
