// The installer CD of the install tests (built by test/fixtures/build-installer-iso.sh
// around the test guest), and the reading of the marker lines its init,
// test/fixtures/installer/vmh-installer, prints on the serial console.
import { execFile } from "node:child_process";
import { access, copyFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { TestDaemon } from "./daemon.js";

export interface InstallerFiles {
  iso: string;
  /** The guest's initramfs plus vmh-installer: direct kernel boot with `rdinit=/vmh-installer vmh.<mode>=1`. */
  initrd: string;
}

/** A first build may have to build the guest too (a kernel download). */
const BUILD_TIMEOUT_MS = 15 * 60_000;

let built: Promise<InstallerFiles> | undefined;

export function ensureInstaller(): Promise<InstallerFiles> {
  built ??= buildInstaller().catch((err: unknown) => {
    built = undefined;
    throw err;
  });
  return built;
}

async function buildInstaller(): Promise<InstallerFiles> {
  const script = await findUp("test/fixtures/build-installer-iso.sh");
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile("bash", [script], { timeout: BUILD_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, out, errOut) => {
      if (err) reject(new Error(`${script} failed: ${err.message}\n${errOut.slice(-4000)}`));
      else resolve(out);
    });
  });
  const iso = /^iso=(.+)$/m.exec(stdout)?.[1];
  const initrd = /^initrd=(.+)$/m.exec(stdout)?.[1];
  if (!iso || !initrd) throw new Error(`${script} printed no iso= and initrd= lines:\n${stdout}`);
  return { iso, initrd };
}

/** Copies the installer ISO into the daemon's images pool; returns its name there. */
export async function installInstallerIso(d: TestDaemon, name = "installer.iso"): Promise<string> {
  const { iso } = await ensureInstaller();
  await copyFile(iso, path.join(d.stateDir, "images", name));
  return name;
}

/** Tests run from dist/test/helpers, which tsc fills without the shell scripts: look upwards. */
async function findUp(relative: string): Promise<string> {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, relative);
    if (await access(candidate).then(() => true, () => false)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`${relative} not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

export interface InstallerMarkers {
  /** Every boot id, oldest first. */
  bootIds: string[];
  /** Boot ids of the boots that finished an install (VMH-INSTALL-DONE). */
  installed: string[];
  /** What each check found on the disk (VMH-DISK-MARKER), oldest first. */
  diskMarkers: string[];
  /** Boot ids of the boots that reset the machine themselves (VMH-REBOOTING). */
  rebooting: string[];
  errors: string[];
}

const ID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})";

/** Complete lines only, as parseGuestMarkers: a log read mid-write may end inside one. */
export function parseInstallerMarkers(text: string): InstallerMarkers {
  const m: InstallerMarkers = { bootIds: [], installed: [], diskMarkers: [], rebooting: [], errors: [] };
  const lines = text.split("\n");
  lines.pop();
  for (const raw of lines) {
    // Firmware and grub draw with escape sequences; a marker is whatever follows them.
    const line = raw.replace(/\r$/, "");
    let r: RegExpExecArray | null;
    if ((r = new RegExp(`VMH-BOOT boot_id=${ID}$`).exec(line))) m.bootIds.push(r[1]!);
    else if ((r = new RegExp(`VMH-INSTALL-DONE boot_id=${ID}$`).exec(line))) m.installed.push(r[1]!);
    else if ((r = /VMH-DISK-MARKER (.*)$/.exec(line))) m.diskMarkers.push(r[1]!);
    else if ((r = new RegExp(`VMH-REBOOTING boot_id=${ID}$`).exec(line))) m.rebooting.push(r[1]!);
    else if ((r = /VMH-ERROR (.*)$/.exec(line))) m.errors.push(r[1]!);
  }
  return m;
}
