// OVMF's CODE and VARS are paired by size, not by name, and a VM's own VARS copy
// is made once and then kept.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { ensureUefiVars, findOvmf } from "../../../src/vm/devices/uefi-firmware.js";

const KiB = 1024;

t.test("the VARS template is the one whose size fits the CODE file", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-ovmf-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = (name: string, bytes: number) => writeFile(path.join(dir, name), Buffer.alloc(bytes, name.length));
  // Debian's sizes; the names are swapped on purpose, and the enrolled-keys template would fit too.
  await f("OVMF_CODE_4M.fd", 3568 * KiB);
  await f("OVMF_CODE.fd", 1920 * KiB);
  await f("OVMF_VARS.fd", 528 * KiB);
  await f("OVMF_VARS_4M.fd", 128 * KiB);
  await f("OVMF_VARS_4M.ms.fd", 528 * KiB);
  const code4 = path.join(dir, "OVMF_CODE_4M.fd");
  t.same(await findOvmf({ ovmfCode: code4 }), { code: code4, varsTemplate: path.join(dir, "OVMF_VARS.fd") }, "4M code: the 528 KiB VARS");
  const code2 = path.join(dir, "OVMF_CODE.fd");
  t.equal((await findOvmf({ ovmfCode: code2 })).varsTemplate, path.join(dir, "OVMF_VARS_4M.fd"), "2M code: the 128 KiB VARS");
  await t.rejects(findOvmf({ ovmfCode: code4, ovmfVars: path.join(dir, "OVMF_VARS_4M.fd") }), { code: "VMH_ERR_FIRMWARE" }, "an explicit mismatch is refused");
  await t.rejects(findOvmf({ ovmfCode: path.join(dir, "nope.fd") }), { code: "VMH_ERR_FIRMWARE" });

  const vars = path.join(dir, "vm-vars.fd");
  const ovmf = await findOvmf({ ovmfCode: code4 });
  await ensureUefiVars(vars, ovmf);
  t.same(await readFile(vars), await readFile(ovmf.varsTemplate), "copied from the template");
  await writeFile(vars, Buffer.alloc(528 * KiB, 7));
  await ensureUefiVars(vars, ovmf);
  t.equal((await readFile(vars))[0], 7, "an existing copy is kept: it holds the guest's boot entries");
  await t.rejects(ensureUefiVars(vars, await findOvmf({ ovmfCode: code2 })), { code: "VMH_ERR_FIRMWARE" }, "a copy for another build is refused");
});

t.test("Debian's ovmf package as installed", { skip: !existsSync("/usr/share/OVMF/OVMF_CODE_4M.fd") && "ovmf not installed" }, async (t) => {
  const ovmf = await findOvmf({ ovmfCode: "/usr/share/OVMF/OVMF_CODE_4M.fd" });
  t.equal(ovmf.varsTemplate, "/usr/share/OVMF/OVMF_VARS_4M.fd");
  t.equal((await findOvmf({ ovmfCode: "/usr/share/OVMF/OVMF_CODE.fd" })).varsTemplate, "/usr/share/OVMF/OVMF_VARS.fd");
});
