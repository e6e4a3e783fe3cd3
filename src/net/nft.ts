// `nft`, run with an argv array and a minimal environment: a script goes on stdin
// (`nft -f -`), which nft applies as one transaction. Knows nothing of VMs.
import { spawnChild } from "../host/child-process.js";
import { NetworkFailed } from "../errors.js";

const NFT_TIMEOUT_MS = 10_000;

/**
 * Test hook for the fail-closed tests only: `install` makes every ruleset change
 * fail as a refused nft would, `compare` makes it succeed but drops the last rule
 * of what is read back, as a ruleset changed under the daemon would look. Unset
 * (always, outside those tests) it does nothing.
 */
export const NFT_FAULT_ENV = "VMHOSTD_TEST_NFT_FAULT";

export function nftFault(): "install" | "compare" | undefined {
  const v = process.env[NFT_FAULT_ENV];
  return v === "install" || v === "compare" ? v : undefined;
}

/** What a host without nftables is told: bridged NICs need it (scripts/setup.sh installs it). */
export const NFT_MISSING = "nft is not installed (package nftables)";

export async function nft(args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnChild("nft", args, { stdio: ["pipe", "pipe", "pipe"], timeout: NFT_TIMEOUT_MS });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (c: Buffer) => out.push(c));
    child.stderr!.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e: NodeJS.ErrnoException) => {
      const why = e.code === "ENOENT" ? NFT_MISSING : e.message;
      reject(new NetworkFailed(`nft ${args.join(" ")} failed: ${why}`, { command: ["nft", ...args] }));
    });
    child.on("close", (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
      else {
        const why = Buffer.concat(err).toString("utf8").trim().slice(0, 2000) || `exit ${code ?? signal}`;
        reject(new NetworkFailed(`nft ${args.join(" ")} failed: ${why}`, { command: ["nft", ...args] }));
      }
    });
    child.stdin!.on("error", () => {});
    child.stdin!.end(stdin ?? "");
  });
}

/** Applies a script as one transaction. */
export async function nftApply(script: string): Promise<void> {
  if (nftFault() === "install") throw new NetworkFailed("nft -f - failed: refused by the test hook", { command: ["nft", "-f", "-"] });
  await nft(["-f", "-"], script);
}
