// UEFI firmware for a VM: OVMF's read-only CODE file, shared by every VM, and a
// VARS file (the variable store: boot entries, settings) of the VM's own, copied
// from OVMF's template when the VM is created (or, for a VM that has none, at its
// first UEFI start). The two halves must come from the same OVMF build: CODE
// expects the variable store at a fixed place in the flash, so a 4 MiB CODE with
// a 2 MiB-build VARS does not boot. Names cannot be trusted for that (Debian
// ships OVMF_CODE.fd for the 2 MiB build and OVMF_CODE_4M.fd for the 4 MiB one,
// and operators copy and rename files), so the pair is checked by size: together
// they must fill one flash device exactly.
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { FirmwareUnavailable } from "../../errors.js";
import { writeFileAtomic } from "../../store/atomic-file.js";

/** The flash sizes of OVMF builds: CODE + VARS fill one of these exactly. */
const FLASH_SIZES = [2 * 1024 * 1024, 4 * 1024 * 1024];

export interface OvmfSettings {
  ovmfCode: string;
  ovmfVars?: string | undefined;
}

export interface OvmfFiles {
  code: string;
  varsTemplate: string;
}

/**
 * The CODE file and the VARS template to copy for new VMs. Without an explicit
 * template, the one beside the CODE file whose size fits it; templates with keys
 * enrolled (`.ms.`, `.snakeoil.`) are for Secure Boot, which needs an SMM build.
 */
export async function findOvmf(settings: OvmfSettings): Promise<OvmfFiles> {
  const codeSize = await fileSize(settings.ovmfCode);
  if (codeSize === undefined) {
    throw new FirmwareUnavailable(
      `UEFI firmware ${settings.ovmfCode} not found: install Debian's ovmf package or set --ovmf-code`,
      { path: settings.ovmfCode },
    );
  }
  if (settings.ovmfVars) {
    const varsSize = await fileSize(settings.ovmfVars);
    if (varsSize === undefined) {
      throw new FirmwareUnavailable(`UEFI variable store template ${settings.ovmfVars} not found (--ovmf-vars)`, {
        path: settings.ovmfVars,
      });
    }
    if (!fits(codeSize, varsSize)) {
      throw new FirmwareUnavailable(
        `UEFI variable store template ${settings.ovmfVars} (${varsSize} bytes) is not from the same OVMF build as ` +
          `${settings.ovmfCode} (${codeSize} bytes): together they must make a 2 or 4 MiB flash`,
        { path: settings.ovmfVars },
      );
    }
    return { code: settings.ovmfCode, varsTemplate: settings.ovmfVars };
  }
  const dir = path.dirname(settings.ovmfCode);
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((n) => /^OVMF_VARS.*\.fd$/.test(n) && !/\.(ms|snakeoil)\./.test(n))
    .sort();
  for (const name of names) {
    const size = await fileSize(path.join(dir, name));
    if (size !== undefined && fits(codeSize, size)) return { code: settings.ovmfCode, varsTemplate: path.join(dir, name) };
  }
  throw new FirmwareUnavailable(
    `no UEFI variable store template in ${dir} fits ${settings.ovmfCode} (${codeSize} bytes); set --ovmf-vars`,
    { path: settings.ovmfCode },
  );
}

/**
 * Makes sure the VM's own VARS file exists and fits the CODE file: copied from the
 * template if missing (atomically: a torn copy would not boot). An existing copy
 * is never replaced: it holds the guest's boot entries. One made for another OVMF
 * build (the CODE setting changed since) is refused, with what to do.
 */
export async function ensureUefiVars(varsFile: string, ovmf: OvmfFiles): Promise<void> {
  const size = await fileSize(varsFile);
  if (size === undefined) {
    await writeFileAtomic(varsFile, await readFile(ovmf.varsTemplate));
    return;
  }
  const codeSize = (await fileSize(ovmf.code)) ?? 0;
  if (!fits(codeSize, size)) {
    throw new FirmwareUnavailable(
      `the VM's UEFI variable store ${varsFile} (${size} bytes) was made for another OVMF build than ${ovmf.code} ` +
        `(${codeSize} bytes); remove it to start from a fresh template (its boot entries are lost)`,
      { path: varsFile },
    );
  }
}

function fits(codeSize: number, varsSize: number): boolean {
  return FLASH_SIZES.includes(codeSize + varsSize);
}

async function fileSize(p: string): Promise<number | undefined> {
  try {
    const st = await stat(p);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}
