// Two test hosts on one machine: two network namespaces joined by a veth pair,
// each with an address only inside this test's namespaces. Made and removed by
// the test; the link between them can be cut and restored.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

export interface TestHost {
  ns: string;
  ip: string;
  dev: string;
}

export interface TwoHosts {
  a: TestHost;
  b: TestHost;
  linkDown(): void;
  linkUp(): void;
  cleanup(): void;
}

const ip = (...args: string[]): void => void execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

export function makeTwoHosts(): TwoHosts {
  const tag = randomBytes(3).toString("hex");
  const subnet = `10.${200 + (parseInt(tag.slice(0, 2), 16) % 50)}.${parseInt(tag.slice(2, 4), 16)}`;
  const a: TestHost = { ns: `vmh-a-${tag}`, ip: `${subnet}.1`, dev: `va${tag}` };
  const b: TestHost = { ns: `vmh-b-${tag}`, ip: `${subnet}.2`, dev: `vb${tag}` };
  ip("netns", "add", a.ns);
  ip("netns", "add", b.ns);
  ip("link", "add", a.dev, "type", "veth", "peer", "name", b.dev);
  for (const h of [a, b]) {
    ip("link", "set", h.dev, "netns", h.ns);
    ip("-n", h.ns, "addr", "add", `${h.ip}/24`, "dev", h.dev);
    ip("-n", h.ns, "link", "set", h.dev, "up");
    ip("-n", h.ns, "link", "set", "lo", "up");
  }
  return {
    a,
    b,
    linkDown: () => ip("-n", a.ns, "link", "set", a.dev, "down"),
    linkUp: () => ip("-n", a.ns, "link", "set", a.dev, "up"),
    cleanup: () => {
      for (const h of [a, b]) {
        try {
          ip("netns", "del", h.ns);
        } catch {
          // already gone
        }
      }
    },
  };
}
