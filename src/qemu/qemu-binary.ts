// Facts about the qemu binary itself, read once at daemon start.
import { execChild } from "../host/child-process.js";

export async function readQemuVersion(binary: string): Promise<string> {
  const { stdout } = await execChild(binary, ["--version"], { timeout: 10_000 });
  const m = /version\s+(\S+)/i.exec(stdout);
  if (!m?.[1]) throw new Error(`cannot read the version of ${binary}: ${stdout.split("\n")[0]}`);
  return m[1];
}
