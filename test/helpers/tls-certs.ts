// Throw-away certificate authorities and host certificates for a test, made with
// Debian's openssl (argv arrays, no shell) in a directory the test removes.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export interface TestCa {
  name: string;
  /** PEM certificate of the CA. */
  cert: string;
  key: string;
  /** Signs a certificate for `cn`, valid for the given IP addresses and names, as both server and client. */
  issue(cn: string, sans: { ips?: string[]; dns?: string[] }, serial?: number): Promise<HostCert>;
}

export interface HostCert {
  cert: string;
  key: string;
  serial: string;
}

export interface CertDir {
  dir: string;
  ca(name: string): Promise<TestCa>;
  cleanup(): Promise<void>;
}

const openssl = (args: string[]): string => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();

export async function makeCertDir(): Promise<CertDir> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-tls-"));
  let issued = 0;
  const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  return {
    dir,
    async ca(name) {
      const cert = path.join(dir, `${name}.pem`);
      const key = path.join(dir, `${name}.key`);
      openssl(["req", "-x509", "-new", ...ecKey, "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${name}`,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
      return {
        name,
        cert,
        key,
        async issue(cn, sans, serial) {
          const stem = path.join(dir, `${cn}-${name}-${++issued}`);
          const ext = `${stem}.ext`;
          const alt = [...(sans.ips ?? []).map((a) => `IP:${a}`), ...(sans.dns ?? []).map((d) => `DNS:${d}`)].join(",");
          await writeFile(ext, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${alt}\n`);
          openssl(["req", "-new", ...ecKey, "-keyout", `${stem}.key`, "-out", `${stem}.csr`, "-subj", `/CN=${cn}`]);
          const serialHex = (serial ?? 0x1000 + issued).toString(16).toUpperCase();
          openssl(["x509", "-req", "-in", `${stem}.csr`, "-CA", cert, "-CAkey", key, "-set_serial", `0x${serialHex}`, "-days", "2",
            "-extfile", ext, "-out", `${stem}.pem`]);
          return { cert: `${stem}.pem`, key: `${stem}.key`, serial: serialHex };
        },
      };
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface TlsCall {
  ca?: string;
  cert?: string;
  key?: string;
  token?: string;
  body?: unknown;
  host?: string;
}

/** A request's answer, or the error that stopped it (a refused handshake, a reset). */
export interface TlsReply {
  status?: number;
  body?: string;
  error?: string;
  code?: string;
}

/** One HTTPS request on a connection of its own; never throws. */
export async function httpsCall(port: number, method: string, urlPath: string, o: TlsCall = {}): Promise<TlsReply> {
  const https = await import("node:https");
  const { readFileSync } = await import("node:fs");
  const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: o.host ?? "127.0.0.1",
        port,
        method,
        path: urlPath,
        agent: false,
        timeout: 10_000,
        ...(o.ca ? { ca: readFileSync(o.ca) } : {}),
        ...(o.cert && o.key ? { cert: readFileSync(o.cert), key: readFileSync(o.key) } : {}),
        headers: {
          ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
          ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
        },
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode, body }));
        res.on("error", (err: NodeJS.ErrnoException) => resolve({ error: err.message, code: err.code }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (err: NodeJS.ErrnoException) => resolve({ error: err.message, code: err.code }));
    req.end(payload);
  });
}

/** The serial number of the certificate a new TLS connection to `port` is shown (hex, upper case). */
export async function servedSerial(port: number, o: { ca: string; cert: string; key: string }): Promise<string> {
  const tls = await import("node:tls");
  const { readFileSync } = await import("node:fs");
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca: readFileSync(o.ca), cert: readFileSync(o.cert), key: readFileSync(o.key) }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial.toUpperCase().replace(/^0+/, ""));
    });
    s.on("error", reject);
    s.setTimeout(10_000, () => s.destroy(new Error("timeout")));
  });
}
