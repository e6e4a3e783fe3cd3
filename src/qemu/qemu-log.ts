// What qemu's own log says about how it ended. For a qemu that is not our child
// (adopted after a daemon restart) there is no exit status to read, but qemu
// notes a fatal signal itself: "terminating on signal 15 from pid 1234 (...)".
import { open } from "node:fs/promises";

const TAIL_BYTES = 4096;

export async function readTerminationNote(qemuLog: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(qemuLog, "r");
  } catch {
    return undefined;
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const lines = buf.toString("utf8").split("\n").filter((l) => l.includes("terminating on signal"));
    return lines.at(-1)?.replace(/^[\d\-T:.+]+\s*/, "").trim();
  } finally {
    await fh.close();
  }
}
