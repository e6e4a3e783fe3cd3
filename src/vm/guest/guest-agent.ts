// The guest agent (qemu-ga) behind the VM's virtio-serial channel. It speaks
// QMP's JSON without a greeting and keeps no session: what a previous client
// left unread may still be in the channel, so the exchange starts with
// guest-sync and a fresh id, and every line before the matching answer is
// dropped. With no agent in the guest nothing answers: a short deadline turns
// that into `connected: false` rather than a hung request.
import { connect, type Socket } from "node:net";
import { randomInt } from "node:crypto";
import type { Vm } from "../vm.js";

const AGENT_TIMEOUT_MS = 1_500;

export interface GuestAgentStatus {
  connected: boolean;
  /** The guest's addresses per interface, from guest-network-get-interfaces. */
  interfaces?: { name: string; mac?: string; addresses: string[] }[];
  addresses?: string[];
}

interface AgentInterface {
  name: string;
  "hardware-address"?: string;
  "ip-addresses"?: { "ip-address": string; prefix: number }[];
}

export async function queryGuestAgent(vm: Vm, timeoutMs = AGENT_TIMEOUT_MS): Promise<GuestAgentStatus> {
  if (!vm.session) return { connected: false };
  let channel: AgentChannel;
  try {
    channel = await AgentChannel.open(vm.paths.qgaSocket, timeoutMs);
  } catch {
    return { connected: false };
  }
  try {
    const id = randomInt(1, 2 ** 31);
    if ((await channel.call("guest-sync", { id }, (r) => r === id)) !== id) return { connected: false };
    await channel.call("guest-ping");
    const ifaces = (await channel.call("guest-network-get-interfaces").catch(() => [])) as AgentInterface[];
    const interfaces = ifaces.map((i) => ({
      name: i.name,
      ...(i["hardware-address"] ? { mac: i["hardware-address"] } : {}),
      addresses: (i["ip-addresses"] ?? []).map((a) => `${a["ip-address"]}/${a.prefix}`),
    }));
    return { connected: true, interfaces, addresses: interfaces.filter((i) => i.name !== "lo").flatMap((i) => i.addresses) };
  } catch {
    return { connected: false };
  } finally {
    channel.close();
  }
}

class AgentChannel {
  private buffer = "";
  private readonly lines: string[] = [];
  private wake: (() => void) | undefined;
  private ended = false;

  private constructor(
    private readonly socket: Socket,
    private readonly deadline: number,
  ) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf("\n")) >= 0) {
        this.lines.push(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 1);
      }
      this.wake?.();
    });
    const end = (): void => {
      this.ended = true;
      this.wake?.();
    };
    socket.on("close", end);
    socket.on("error", end);
  }

  static open(path: string, timeoutMs: number): Promise<AgentChannel> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error("guest agent socket: connect timed out"));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(new AgentChannel(socket, deadline));
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Sends one command and returns its `return`, skipping lines until `accept` takes one (default: the first). */
  async call(command: string, args?: Record<string, unknown>, accept: (r: unknown) => boolean = () => true): Promise<unknown> {
    this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + "\n");
    for (;;) {
      const line = await this.nextLine();
      let msg: { return?: unknown; error?: { desc?: string } };
      try {
        msg = JSON.parse(line.replace(/^\xff/, "")) as typeof msg;
      } catch {
        continue;
      }
      if (msg.error) throw new Error(`guest agent refused ${command}: ${msg.error.desc ?? "error"}`);
      if ("return" in msg && accept(msg.return)) return msg.return;
    }
  }

  private async nextLine(): Promise<string> {
    while (this.lines.length === 0) {
      if (this.ended) throw new Error("guest agent channel closed");
      const left = this.deadline - Date.now();
      if (left <= 0) throw new Error("guest agent did not answer in time");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return this.lines.shift()!;
  }

  close(): void {
    this.socket.destroy();
  }
}
