// What crosses a test namespace's link: Debian's tcpdump writes the packets to a
// file (argv array, no shell), which is then searched connection by connection,
// so a string split across two segments is still found.
import { spawn, type ChildProcess } from "node:child_process";
import { createReadStream } from "node:fs";

export interface CaptureScan {
  /** TCP payload bytes seen. */
  bytes: number;
  /** The markers found in some connection's payload (a marker split across segments included). */
  found: string[];
}

export interface Capture {
  /** Stops tcpdump (its file complete) and looks for the markers in every TCP connection's payload. */
  stop(markers: string[]): Promise<CaptureScan>;
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
    async stop(markers) {
      proc.kill("SIGINT");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      if (/[1-9]\d* packets? dropped by kernel/.test(stderr)) throw new Error(`tcpdump lost packets: ${stderr}`);
      return scanCapture(file, markers);
    },
  };
}

/**
 * Reads a pcap file (Ethernet, IPv4) record by record, without holding it whole (a
 * disk copy is a gigabyte), and looks for each marker in each connection's
 * payload stream, keeping the last bytes of each so a marker split across two
 * segments is found.
 */
export async function scanCapture(file: string, markers: string[]): Promise<CaptureScan> {
  const wanted = markers.map((m) => Buffer.from(m));
  const keep = Math.max(0, ...wanted.map((m) => m.length)) - 1;
  const tails = new Map<string, Buffer>();
  const found = new Set<string>();
  let bytes = 0;
  let le = true;
  let pending: Buffer = Buffer.alloc(0);
  let headerRead = false;
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }) as AsyncIterable<Buffer>) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    let at = 0;
    if (!headerRead) {
      if (pending.length < 24) continue;
      const magic = pending.readUInt32LE(0);
      le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
      if (!le && ![0xa1b2c3d4, 0xa1b23c4d].includes(pending.readUInt32BE(0))) throw new Error(`${file} is not a pcap file`);
      headerRead = true;
      at = 24;
    }
    while (at + 16 <= pending.length) {
      const len = le ? pending.readUInt32LE(at + 8) : pending.readUInt32BE(at + 8);
      if (at + 16 + len > pending.length) break;
      const seg = tcpSegment(pending.subarray(at + 16, at + 16 + len));
      at += 16 + len;
      if (!seg || seg.payload.length === 0) continue;
      bytes += seg.payload.length;
      const hay = Buffer.concat([tails.get(seg.flow) ?? Buffer.alloc(0), seg.payload]);
      for (const [i, m] of wanted.entries()) if (hay.includes(m)) found.add(markers[i]!);
      tails.set(seg.flow, Buffer.from(hay.subarray(Math.max(0, hay.length - keep))));
    }
    pending = Buffer.from(pending.subarray(at));
  }
  return { bytes, found: [...found] };
}

/** An Ethernet frame's IPv4 TCP payload and its direction, if it is one. */
function tcpSegment(frame: Buffer): { flow: string; payload: Buffer } | undefined {
  if (frame.length < 14 + 20 || frame.readUInt16BE(12) !== 0x0800) return undefined;
  const ip = frame.subarray(14);
  if (ip[9] !== 6) return undefined;
  const ihl = (ip[0]! & 0x0f) * 4;
  const tcp = ip.subarray(ihl, ip.readUInt16BE(2));
  if (tcp.length < 20) return undefined;
  const flow = `${ip.subarray(12, 16).join(".")}:${tcp.readUInt16BE(0)}>${ip.subarray(16, 20).join(".")}:${tcp.readUInt16BE(2)}`;
  return { flow, payload: tcp.subarray((tcp[12]! >> 4) * 4) };
}
