// Commands typed into the test guest's shell (vmh.shell=1) over the console
// WebSocket, one connection per command so a daemon restart in between costs
// nothing, and the guest's disk read and written at 512-byte sectors: what a
// test then asserts is what the guest itself sees on its disk.
import type { TestDaemon } from "./daemon.js";
import { openConsole } from "./console-socket.js";

let serial = 0;

/** Types `command` and resolves with the first match of `pattern` in what follows (never in the echoed command). */
export async function shellRun(d: TestDaemon, vm: string, command: string, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const c = await openConsole(d, vm, "rw");
  try {
    const from = c.text().length;
    c.type(`${command}\n`);
    const text = await c.waitFor(pattern, timeoutMs, from);
    return pattern.exec(text)!;
  } finally {
    c.ws.close();
    await c.closed;
  }
}

/** Writes `marker` at `sector` of /dev/vda and syncs it to the disk. */
export async function writeSector(d: TestDaemon, vm: string, sector: number, marker: string): Promise<void> {
  const n = ++serial;
  // The arithmetic makes the guest's answer differ from the echo of what was typed.
  await shellRun(d, vm, `printf ${marker} | dd of=/dev/vda bs=512 seek=${sector} conv=fsync 2>/dev/null && echo W$((${n}+0))-OK`, new RegExp(`W${n}-OK`));
}

/** What /dev/vda holds at `sector` (NULs dropped), read past the guest's page cache. */
export async function readSector(d: TestDaemon, vm: string, sector: number): Promise<string> {
  const n = ++serial;
  const cmd = `echo 3 > /proc/sys/vm/drop_caches; echo "R$((${n}+0))=[$(dd if=/dev/vda bs=512 skip=${sector} count=1 2>/dev/null | tr -d '\\000')]"`;
  const m = await shellRun(d, vm, cmd, new RegExp(`R${n}=\\[([A-Za-z0-9-]*)\\]`));
  return m[1]!;
}
