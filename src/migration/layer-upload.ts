// The source's side of copying a VM's snapshot layers (layer-files.ts): each file
// is hashed, then streamed to the destination's daemon over the peer channel the
// migration already uses (its token and TLS), before the destination's qemu
// starts. The layers are frozen while the guest runs: nothing writes them while
// the VM's lock is held by the migration (no merge, no revert).
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { MigrationFailed } from "../errors.js";
import type { SnapshotRecord } from "../vm/snapshots/snapshot-record.js";
import { layerFiles } from "./layer-files.js";
import type { PeerClient } from "./peer-client.js";

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest("hex");
}

/** Sends every layer and memory state of `record` from `vmDir`; `progress` gets the bytes sent so far. */
export async function sendLayers(
  peer: PeerClient,
  vm: string,
  migration: string,
  vmDir: string,
  record: SnapshotRecord,
  progress: (p: { layerBytesSent: number; layerBytesTotal: number }) => void,
  signal: AbortSignal,
): Promise<void> {
  const files = await Promise.all(layerFiles(record).map(async (rel) => ({ rel, size: (await stat(path.join(vmDir, rel))).size })));
  const total = files.reduce((a, f) => a + f.size, 0);
  let sent = 0;
  for (const f of files) {
    if (signal.aborted) throw new MigrationFailed("cancelled by the operator");
    const abs = path.join(vmDir, f.rel);
    const sha256 = await sha256Of(abs);
    const query = new URLSearchParams({ migration, size: String(f.size), sha256 });
    const r = await peer.upload<{ code?: string; detail?: string }>(`/v1/incoming/${vm}/layers/${f.rel}?${query}`, abs, f.size);
    if (r.status !== 201) {
      throw new MigrationFailed(`destination ${peer.url} refused snapshot layer ${f.rel}: HTTP ${r.status}: ${r.body?.detail ?? ""} (${r.body?.code ?? r.status})`, {
        destinationStatus: r.status,
        destinationCode: r.body?.code,
      });
    }
    sent += f.size;
    progress({ layerBytesSent: sent, layerBytesTotal: total });
  }
}
