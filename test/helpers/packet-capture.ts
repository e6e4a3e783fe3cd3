// What crosses a test namespace's link: Debian's tcpdump writes the packets to a
// file (argv array, no shell), and the TCP payloads are put back together per
// connection, so a string split across two segments is still found.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";

export interface Capture {
  /** Stops tcpdump (its file complete) and returns every TCP connection's payload, in capture order. */
  stop(): Promise<Buffer[]>;
}

/** Starts capturing on `dev` inside `ns`, with a tcpdump filter; resolves once tcpdump listens. */
export async function startCapture(ns: string, dev: string, file: string, filter: string[]): Promise<Capture> {
  // -Z root: tcpdump would otherwise drop to its own user, who cannot write in the test's directory.
  // -B: a large kernel buffer, so a burst of migration traffic is not dropped.
  const proc: ChildProcess = spawn("ip", ["netns", "exec", ns, "tcpdump", "-i", dev, "-Z", "root", "-B", "65536", "-s", "0", "-U", "-w", file, ...filter], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
  let stderr = "";
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start in 10 s: ${stderr}`)), 10_000);
    proc.stderr!.on("data", (c: Buffer) => {
      stderr += c.toString();
      if (/listening on/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited (${code}): ${stderr}`));
    });
  });
  return {
    async stop() {
      proc.kill("SIGINT");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      if (/[1-9]\d* packets? dropped by kernel/.test(stderr)) throw new Error(`tcpdump lost packets: ${stderr}`);
      return tcpPayloads(await readFile(file));
    },
  };
}

/** The TCP payload of each connection direction in a pcap file (Ethernet, IPv4), concatenated in capture order. */
export function tcpPayloads(pcap: Buffer): Buffer[] {
  const magic = pcap.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && pcap.readUInt32BE(0) !== 0xa1b2c3d4 && pcap.readUInt32BE(0) !== 0xa1b23c4d) throw new Error("not a pcap file");
  const u32 = (o: number) => (le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o));
  const flows = new Map<string, Buffer[]>();
  for (let at = 24; at + 16 <= pcap.length; ) {
    const len = u32(at + 8);
    const frame = pcap.subarray(at + 16, at + 16 + len);
    at += 16 + len;
    if (frame.length < 14 + 20 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ip = frame.subarray(14);
    if (ip[9] !== 6) continue;
    const ihl = (ip[0]! & 0x0f) * 4;
    const total = ip.readUInt16BE(2);
    const tcp = ip.subarray(ihl, total);
    if (tcp.length < 20) continue;
    const payload = tcp.subarray((tcp[12]! >> 4) * 4);
    if (payload.length === 0) continue;
    const key = `${ip.subarray(12, 16).join(".")}:${tcp.readUInt16BE(0)}>${ip.subarray(16, 20).join(".")}:${tcp.readUInt16BE(2)}`;
    (flows.get(key) ?? flows.set(key, []).get(key)!).push(payload);
  }
  return [...flows.values()].map((parts) => Buffer.concat(parts));
}
