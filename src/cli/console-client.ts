// vmctl console: the terminal relayed to a VM's serial console over the daemon's
// WebSocket. On a terminal, stdin goes raw so every key (Ctrl-C included) reaches
// the guest; Ctrl-] detaches, as in telnet and virsh. From a pipe, stdin is sent
// as it comes and its end detaches. Messages go to stderr: stdout carries only
// what the guest printed.
import WebSocket, { type RawData } from "ws";
import { describeTransportError } from "../tls/client-transport.js";
import { ApiError, type ApiTarget } from "./api-client.js";

/** Ctrl-]: the byte a terminal sends for it. */
export const ESCAPE_BYTE = 0x1d;

/** Close codes the daemon uses (src/vm/console/console-hub.ts), as the user should read them. */
const CLOSE_MESSAGES: Record<number, string> = {
  4000: "the VM stopped",
  4001: "the daemon lost qemu's console; attach again",
  4002: "this terminal fell too far behind the console's output",
  4009: "the console already has a writer",
  1001: "the daemon is going away",
  1005: "the daemon closed the console",
  1006: "the connection to the daemon was lost",
};

/** Below the daemon's frame limit (64 KiB), whatever size stdin's reads are. */
const MAX_FRAME = 16 * 1024;

export interface ConsoleOptions {
  target: ApiTarget;
  vm: string;
  readOnly: boolean;
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export function consoleUrl(target: ApiTarget, vm: string, readOnly: boolean): string {
  const path = `/v1/vms/${encodeURIComponent(vm)}/console?mode=${readOnly ? "ro" : "rw"}`;
  if (!target.url) return `ws+unix://${target.socketPath}:${path}`;
  const url = new URL(path, target.url);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** Runs until detach, the VM stops or the connection ends; resolves with the exit status. */
export async function runConsole(o: ConsoleOptions): Promise<number> {
  const ws = await connect(consoleUrl(o.target, o.vm, o.readOnly), o.target);
  const tty = o.stdin.isTTY === true;
  // Also off a terminal: a script can tell from it that the console is attached.
  o.stderr.write(`Connected to ${o.vm}${o.readOnly ? " (read-only)" : ""}. Escape character is ^] (Ctrl-]).${tty ? "\r" : ""}\n`);

  return new Promise<number>((resolve) => {
    let detached = false;
    const finish = (status: number, message?: string): void => {
      o.stdin.off("data", onInput);
      o.stdin.off("end", onEnd);
      if (tty) o.stdin.setRawMode(false);
      o.stdin.pause();
      for (const sig of ["SIGTERM", "SIGHUP"] as const) process.off(sig, onSignal);
      if (message) o.stderr.write(`${tty ? "\r\n" : ""}[${message}]\n`);
      resolve(status);
    };
    const detach = (): void => {
      detached = true;
      ws.close(1000, "detached");
    };
    const onInput = (chunk: Buffer): void => {
      const esc = chunk.indexOf(ESCAPE_BYTE);
      const keys = esc < 0 ? chunk : chunk.subarray(0, esc);
      if (!o.readOnly) for (let i = 0; i < keys.length; i += MAX_FRAME) ws.send(keys.subarray(i, i + MAX_FRAME));
      if (esc >= 0) detach();
    };
    // A pipe that ends has nothing more to say; a read-only viewer ignores its stdin.
    const onEnd = (): void => {
      if (!o.readOnly) detach();
    };
    // Never leave the user's terminal raw.
    const onSignal = (): void => {
      if (tty) o.stdin.setRawMode(false);
      process.exit(1);
    };

    ws.on("message", (data: RawData) => o.stdout.write(toBuffer(data)));
    ws.on("close", (code, reason) => {
      if (detached) return finish(0, "detached");
      const why = CLOSE_MESSAGES[code] ?? `closed by the daemon (${code}${reason.length ? `: ${reason.toString()}` : ""})`;
      finish(code === 4000 ? 0 : 1, why);
    });
    ws.on("error", (err) => o.stderr.write(`vmctl: ${err.message}\n`));

    for (const sig of ["SIGTERM", "SIGHUP"] as const) process.on(sig, onSignal);
    // Read-only from a pipe: stdin is not read at all (it may be /dev/null or a terminal's job control).
    if (!tty && o.readOnly) return;
    if (tty) o.stdin.setRawMode(true);
    o.stdin.on("data", onInput);
    o.stdin.on("end", onEnd);
    o.stdin.resume();
  });
}

/** Opens the WebSocket; a refused upgrade becomes an ApiError with the daemon's code. */
function connect(url: string, target: ApiTarget): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const tls = target.tls ?? {};
    const ws = new WebSocket(url, {
      ...(target.token ? { headers: { authorization: `Bearer ${target.token}` } } : {}),
      // wss:// only: the daemon verified against the given CA, and our certificate shown if it asks.
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
    });
    ws.once("open", () => resolve(ws));
    ws.once("error", (err) => reject(new Error(`cannot reach vmhostd: ${describeTransportError(err)}`)));
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let problem: { code?: string; detail?: string } = {};
        try {
          problem = JSON.parse(text) as typeof problem;
        } catch {
          // not a problem document
        }
        reject(new ApiError(res.statusCode ?? 0, problem.code ?? `HTTP_${res.statusCode}`, problem.detail ?? text));
      });
    });
  });
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
