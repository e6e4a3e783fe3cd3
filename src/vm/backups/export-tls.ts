// A disk export on TCP with TLS: qemu-nbd listens on the host's migration
// address (--migration-host, else the --listen host, else loopback) with this
// host's certificate and asks every client for a certificate the --tls-ca bundle
// signed (verify-peer). qemu-nbd runs as the VM's uid, which cannot read the
// daemon's own files: it gets copies (ca-cert.pem, server-cert.pem,
// server-key.pem; owned by that uid, mode 0400) in a directory of root's, read
// once at its start, removed as soon as it listens.
import { chown, mkdir, open, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { StorageFailed } from "../../errors.js";
import type { QemuIdentity } from "../../qemu/qemu-user.js";
import type { HostContext } from "../host-context.js";

const TLS_CREDS_ID = "vmh-nbd-tls";
const LISTEN_WAIT_MS = 10_000;

/** Where a TLS export listens. */
export function exportHost(host: Pick<HostContext, "config">): string {
  const { migrationHost, listen } = host.config;
  const h = migrationHost ?? listen?.slice(0, listen.lastIndexOf(":"));
  return (h ?? "127.0.0.1").replace(/^\[|\]$/g, "");
}

/** A port free on `address` now (the kernel's choice), for qemu-nbd to bind next. */
export function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, address, () => {
      const a = s.address();
      s.close(() => (a && typeof a === "object" ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

/** Writes the copies qemu-nbd reads; `dir` is root's, the files the VM uid's. */
export async function writeServerCredentials(dir: string, material: { cert: string; key: string; ca?: string }, id: QemuIdentity | undefined): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { mode: 0o711 });
  const files: [string, string][] = [
    ["ca-cert.pem", material.ca ?? ""],
    ["server-cert.pem", material.cert],
    ["server-key.pem", material.key],
  ];
  for (const [name, text] of files) {
    const f = await open(path.join(dir, name), "wx", 0o400);
    try {
      await f.writeFile(text);
      if (id) await f.chown(id.uid, id.gid);
    } finally {
      await f.close();
    }
  }
  if (id) await chown(dir, 0, 0);
}

export function tlsServerArgs(dir: string, address: string, port: number): string[] {
  return ["--object", `tls-creds-x509,id=${TLS_CREDS_ID},endpoint=server,dir=${dir},verify-peer=on`, `--tls-creds=${TLS_CREDS_ID}`, `--bind=${address}`, `--port=${port}`];
}

/** Waits until something accepts on address:port; qemu-nbd has read its credentials by then. */
export async function waitForListener(address: string, port: number, alive: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + LISTEN_WAIT_MS;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ host: address, port }, () => (c.destroy(), resolve(true)));
      c.once("error", () => resolve(false));
    });
    if (ok) return;
    if (!(await alive())) throw new StorageFailed("qemu-nbd ended before it listened");
    await sleep(50);
  }
  throw new StorageFailed(`qemu-nbd did not listen on ${address}:${port} in time`);
}

/** nbds://host:port/name, brackets around an IPv6 address. */
export function tlsUri(address: string, port: number, exportName: string): string {
  const h = address.includes(":") ? `[${address}]` : address;
  return `nbds://${h}:${port}/${encodeURIComponent(exportName)}`;
}
