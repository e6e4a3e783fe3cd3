// `--accel auto`: use KVM only if it really runs a guest at a useful speed.
// /dev/kvm existing is not enough: under nested virtualisation KVM can accept a
// guest and then crawl (a kernel makes no visible progress). The probe boots the
// same tiny guest under KVM and under TCG, firmware and all, to a boot sector
// that exits qemu through isa-debug-exit, and compares the times.
import { constants } from "node:fs";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import type { AccelMode } from "../config.js";
import { execChild } from "../host/child-process.js";
import type { Accel } from "./qemu-argv.js";

/** isa-debug-exit turns `out 0xf4, 0x2a` into exit status (0x2a << 1) | 1. */
const PROBE_EXIT_STATUS = 85;
const PROBE_TIMEOUT_MS = 5_000;
/** KVM must reach the boot sector this fast, and at most this many times TCG's time. */
const KVM_MAX_MS = 1_500;
const KVM_MAX_RATIO = 3;

function bootSector(): Buffer {
  const disk = Buffer.alloc(1024 * 1024);
  // mov al, 0x2a; out 0xf4, al; hlt; jmp $-1
  Buffer.from([0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]).copy(disk, 0);
  disk[510] = 0x55;
  disk[511] = 0xaa;
  return disk;
}

export interface ProbeResult {
  ok: boolean;
  ms: number;
  detail: string;
}

export async function probeAccel(qemu: string, accel: Accel, image: string): Promise<ProbeResult> {
  const argv = [
    "-accel", accel, "-machine", "q35", "-nodefaults", "-no-user-config", "-display", "none", "-m", "32",
    "-blockdev", JSON.stringify({ driver: "raw", "node-name": "probe", "read-only": true, file: { driver: "file", filename: image } }),
    "-device", "virtio-blk-pci,drive=probe,bootindex=1",
    "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
  ];
  const started = performance.now();
  const ended = await execChild(qemu, argv, { timeout: PROBE_TIMEOUT_MS, killSignal: "SIGKILL" }).then(
    () => ({ code: 0 as unknown, killed: false, stderr: "" }),
    (err: { code?: unknown; killed?: boolean; stderr?: string }) => ({ code: err.code, killed: err.killed === true, stderr: err.stderr ?? "" }),
  );
  const ms = Math.round(performance.now() - started);
  if (ended.code === PROBE_EXIT_STATUS) return { ok: true, ms, detail: "probe guest ran" };
  return { ok: false, ms, detail: (ended.killed ? "probe guest made no progress" : ended.stderr.trim()) || `exit ${String(ended.code)}` };
}

/** Chooses the accelerator for this daemon's run. `kvm` and `tcg` are taken as given. */
export async function resolveAccel(mode: AccelMode, qemu: string, log: Logger): Promise<Accel> {
  if (mode !== "auto") return mode;
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    log.warn("accel auto: /dev/kvm is not usable; using TCG (software emulation, slow)");
    return "tcg";
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmhostd-probe-"));
  try {
    const image = path.join(dir, "probe.img");
    await writeFile(image, bootSector());
    const [kvm, tcg] = [await probeAccel(qemu, "kvm", image), await probeAccel(qemu, "tcg", image)];
    if (kvm.ok && kvm.ms <= KVM_MAX_MS && (!tcg.ok || kvm.ms <= tcg.ms * KVM_MAX_RATIO)) {
      log.info({ kvmMs: kvm.ms, tcgMs: tcg.ms }, "accel auto: KVM runs guests; using KVM");
      return "kvm";
    }
    log.warn({ kvm, tcg }, "accel auto: KVM does not run guests at a useful speed; using TCG (slow)");
    return "tcg";
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
