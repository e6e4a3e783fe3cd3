// A snapshot's RAM and device state, saved and loaded through qemu's own
// migration stream over a Unix socket the daemon serves, into and out of a file
// in the VM's directory. Chosen over snapshot-save/snapshot-load, which keep the
// state inside a qcow2 image as an internal snapshot (a second snapshot scheme
// beside the overlays, on an image that is frozen read-only once overlaid) and
// pause the guest for the whole save. A migration runs live; with
// pause-before-switchover it stops at the last pass with the guest paused and
// the disks still active, which is when the disks switch onto their overlays,
// so memory and disks are of one instant. qemu (sandboxed, its own uid) opens
// no file for it: the daemon writes and reads the stream.
import { createReadStream, createWriteStream } from "node:fs";
import { chown, open, rm } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { StorageFailed } from "../../errors.js";
import type { QemuIdentity } from "../../qemu/qemu-user.js";
import type { QemuSession } from "../qemu-session.js";

const QMP_MS = 30_000;
const POLL_MS = 100;
/** A save or load that moves no byte for this long has failed. */
const STALL_MS = 60_000;

interface MigrateInfo {
  status?: string;
  "error-desc"?: string;
  ram?: { transferred?: number };
}

async function migrateInfo(session: QemuSession): Promise<MigrateInfo> {
  return (await session.executeUntyped("query-migrate", undefined, QMP_MS)) as MigrateInfo;
}

/**
 * Saves the running guest's state to `file`; `atSwitchover` runs while the
 * guest is paused before the last pass (the disk switch). The guest is left
 * paused (postmigrate) on success; the caller resumes it.
 */
export async function saveMemory(session: QemuSession, runDir: string, file: string, id: QemuIdentity | undefined, atSwitchover: () => Promise<void>): Promise<void> {
  const sock = path.join(runDir, "vmstate-out.sock");
  await rm(sock, { force: true });
  const out = await open(file, "wx", 0o600);
  const server = createServer();
  const written = new Promise<void>((resolve, reject) => {
    server.once("connection", (conn: Socket) => {
      server.close();
      const sink = createWriteStream("", { fd: out.fd, autoClose: false });
      conn.pipe(sink);
      sink.on("finish", resolve);
      sink.on("error", reject);
      conn.on("error", reject);
    });
    server.on("error", reject);
  });
  written.catch(() => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(sock, () => resolve());
  });
  // qemu connects as the VM's uid.
  if (id) await chown(sock, id.uid, id.gid);
  const previous = (await session.executeUntyped("query-migrate-parameters", undefined, QMP_MS)) as { "max-bandwidth"?: number };
  try {
    await session.executeUntyped("migrate-set-capabilities", { capabilities: [{ capability: "pause-before-switchover", state: true }] }, QMP_MS);
    await session.executeUntyped("migrate-set-parameters", { "max-bandwidth": 100_000 * 1024 * 1024 }, QMP_MS);
    await session.executeUntyped("migrate", { uri: `unix:${sock}` }, QMP_MS);
    let switched = false;
    let last = -1;
    let moved = Date.now();
    for (;;) {
      const info = await migrateInfo(session);
      if (info.status === "completed") break;
      if (info.status === "failed" || info.status === "cancelled") throw new StorageFailed(`saving the memory failed: ${info["error-desc"] ?? info.status}`);
      if (info.status === "pre-switchover" && !switched) {
        switched = true;
        try {
          await atSwitchover();
        } catch (err) {
          await session.executeUntyped("migrate_cancel", undefined, QMP_MS).catch(() => {});
          throw err;
        }
        await session.executeUntyped("migrate-continue", { state: "pre-switchover" }, QMP_MS);
      }
      const sent = info.ram?.transferred ?? 0;
      if (sent !== last) [last, moved] = [sent, Date.now()];
      else if (Date.now() - moved > STALL_MS) throw new StorageFailed("saving the memory made no progress");
      await sleep(POLL_MS);
    }
    await written;
    await out.sync();
  } catch (err) {
    await session.executeUntyped("migrate_cancel", undefined, QMP_MS).catch(() => {});
    throw err;
  } finally {
    server.close();
    await out.close().catch(() => {});
    await rm(sock, { force: true });
    // A later migration out must not stop at the switchover for a step nobody takes.
    await session.executeUntyped("migrate-set-capabilities", { capabilities: [{ capability: "pause-before-switchover", state: false }] }, QMP_MS).catch(() => {});
    if (previous["max-bandwidth"] !== undefined) await session.executeUntyped("migrate-set-parameters", { "max-bandwidth": previous["max-bandwidth"] }, QMP_MS).catch(() => {});
  }
}

/** Feeds `file` to a qemu started with -incoming defer; the guest is left paused with the saved state. */
export async function loadMemory(session: QemuSession, runDir: string, file: string): Promise<void> {
  const sock = path.join(runDir, "vmstate-in.sock");
  await rm(sock, { force: true });
  await session.executeUntyped("migrate-incoming", { uri: `unix:${sock}` }, QMP_MS);
  const conn = await new Promise<Socket>((resolve, reject) => {
    const c = connect(sock, () => resolve(c));
    c.on("error", reject);
  });
  const sent = new Promise<void>((resolve, reject) => {
    const src = createReadStream(file);
    src.on("error", reject);
    conn.on("error", reject);
    src.pipe(conn);
    conn.on("finish", resolve);
  });
  sent.catch(() => {});
  let moved = Date.now();
  let last = "";
  for (;;) {
    const info = await migrateInfo(session);
    if (info.status === "completed") break;
    if (info.status === "failed" || info.status === "cancelled") throw new StorageFailed(`loading the memory failed: ${info["error-desc"] ?? info.status}`);
    const now = `${info.status}:${conn.bytesWritten}`;
    if (now !== last) [last, moved] = [now, Date.now()];
    else if (Date.now() - moved > STALL_MS) throw new StorageFailed("loading the memory made no progress");
    await sleep(POLL_MS);
  }
  await sent.catch(() => {});
  conn.destroy();
}
