// The migration stream and the NBD disk copy over TLS. qemu takes its credentials
// as a `tls-creds-x509` object that reads PEM files from a directory (ca-cert.pem
// and server-cert.pem/server-key.pem, or client-cert.pem/client-key.pem); its
// unprivileged uid cannot read the daemon's own files, so each migration hands
// that VM's qemu a copy of this host's credentials, owned by the VM's uid (mode
// 0400) in a directory of root's below the VM's run directory. qemu reads the
// files once, when the object is made; the copies are removed right after, and
// again when the migration ends, so the key lives on only in qemu's memory.
//
// Who may connect: qemu verifies the peer's certificate against the CA bundle
// (--tls-ca), and on the destination an `authz-simple` object lets in exactly the
// distinguished name of the certificate the source presented when it asked for
// this migration over the API: the one host that prepared it, not any holder of
// a certificate of the fleet's CA (which may also sign operators' client
// certificates).
import { X509Certificate } from "node:crypto";
import { chmod, mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import type { HostContext } from "../vm/host-context.js";
import type { QemuSession } from "../vm/qemu-session.js";
import type { Vm } from "../vm/vm.js";

export const TLS_CREDS_ID = "vmh-mig-tls";
export const TLS_AUTHZ_ID = "vmh-mig-authz";

/** TLS towards the peer's qemu: its address to verify (source) or the source's identity to admit (destination). */
export type QemuTlsRole = { endpoint: "client" } | { endpoint: "server"; peerDn: string };

/** This host migrates over TLS when it has a certificate and a CA to check peers against (mutual TLS). */
export function migratesOverTls(host: Pick<HostContext, "tls">): boolean {
  return host.tls?.verifiesClients === true;
}

/**
 * A certificate's subject as gnutls (and so qemu's authz) prints it: the
 * relative names in certificate order, joined by ",", with "," inside a value
 * escaped as "\,". Node prints the same names one per line, escaped alike.
 */
export function distinguishedName(cert: X509Certificate | Buffer | string): string {
  const x = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  return x.subject.split("\n").join(",");
}

/** Where a VM's copies of the credentials are while qemu loads them. */
export function tlsCopyDir(vm: Pick<Vm, "paths">): string {
  return path.join(vm.paths.runDir, "migration-tls");
}

/**
 * Makes the credentials object (and, on the destination, the authz object) in
 * the VM's qemu from fresh per-VM copies, and removes the copies once qemu has
 * read them. Objects left by an earlier migration of the same qemu are replaced.
 */
export async function installQemuTls(vm: Vm, session: QemuSession, host: HostContext, role: QemuTlsRole): Promise<void> {
  const material = host.tls?.clientOptions();
  if (!material?.ca) throw new Error("migration over TLS needs --tls-ca");
  await removeQemuTls(session);
  const dir = tlsCopyDir(vm);
  const as = await host.qemuUsers.identityFor(vm.name);
  const side = role.endpoint;
  await rm(dir, { recursive: true, force: true });
  try {
    // root's directory: qemu may pass through to the names it is told, not list or add any.
    await mkdir(dir, { mode: 0o711 });
    await chmod(dir, 0o711);
    const files: [string, string][] = [
      ["ca-cert.pem", material.ca],
      [`${side}-cert.pem`, material.cert],
      [`${side}-key.pem`, material.key],
    ];
    for (const [name, text] of files) {
      // "wx": a name that somehow exists already is never written through.
      const f = await open(path.join(dir, name), "wx", 0o400);
      try {
        await f.writeFile(text);
        if (as) await f.chown(as.uid, as.gid);
        await f.chmod(0o400);
      } finally {
        await f.close();
      }
    }
    await session.executeUntyped(
      "object-add",
      { "qom-type": "tls-creds-x509", id: TLS_CREDS_ID, endpoint: side, dir, "verify-peer": true },
      10_000,
    );
    if (role.endpoint === "server") {
      await session.executeUntyped("object-add", { "qom-type": "authz-simple", id: TLS_AUTHZ_ID, identity: role.peerDn }, 10_000);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Drops the objects (after the migration; nothing uses them then). Never throws. */
export async function removeQemuTls(session: QemuSession): Promise<void> {
  for (const id of [TLS_AUTHZ_ID, TLS_CREDS_ID]) await session.executeUntyped("object-del", { id }, 5000).catch(() => {});
}
