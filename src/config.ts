// The daemon's settings as one zod schema. Each setting can come from a flag
// (`--state-dir`) or an environment variable (`VMHOSTD_STATE_DIR`); a flag wins.
// A bad value stops the daemon with a message naming the setting.
import { parseArgs } from "node:util";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { passthroughModes } from "./qmp/passthrough-policy.js";
import { readPeerTokens, TokenFileRefused } from "./host/peer-token-files.js";

export const accelModes = ["kvm", "tcg", "auto"] as const;
export type AccelMode = (typeof accelModes)[number];

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected HOST:PORT")
  .refine((v) => {
    const port = Number(v.slice(v.lastIndexOf(":") + 1));
    return port > 0 && port < 65536;
  }, "port must be 1-65535");

// A size in bytes, with an optional binary suffix: 262144, 256K, 8M, 1G.
const byteSize = z
  .string()
  .regex(/^\d+[KMG]?$/i, "expected bytes, optionally with K, M or G")
  .transform((v) => Number.parseInt(v, 10) * 1024 ** Math.max(0, " KMG".indexOf(v.slice(-1).toUpperCase())))
  .pipe(z.number().int().min(4096, "must be at least 4K").max(2 ** 40));

const absolutePath = z.string().min(1).refine((p) => path.isAbsolute(p), "must be an absolute path");
// qemu's -chardev option is comma-separated, and these directories end up inside it.
const dirPath = absolutePath.refine((p) => !p.includes(","), "must not contain ','");

export const configSchema = z
  .object({
    stateDir: dirPath.default("/var/lib/vmhostd"),
    runDir: dirPath.default("/run/vmhostd"),
    socket: absolutePath.optional(),
    listen: hostPort.optional(),
    accel: z.enum(accelModes).default("auto"),
    qemu: z.string().min(1).default("qemu-system-x86_64"),
    qemuImg: z.string().min(1).default("qemu-img"),
    qemuUser: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a user name")
      .default("vmhostd-qemu")
      .describe("qemu runs unprivileged: each VM as its own uid from this user's /etc/subuid range, in its group; root only when said"),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    pools: z
      .array(z.string().regex(/^[a-z][a-z0-9-]{0,31}=\/[^,]*$/, "expected NAME=/absolute/dir"))
      .default([])
      .refine((ps) => new Set(ps.map((p) => p.split("=")[0])).size === ps.length, "a pool name is given twice"),
    hostReservedMiB: z.coerce.number().int().min(0).max(1 << 30).default(1024),
    consoleLogMax: byteSize
      .default(8 * 1024 * 1024)
      .describe("serial console log kept per VM, newest bytes: the live file is rotated to .1 past half of it"),
    maxConnections: z.coerce.number().int().min(8).max(100_000).default(512),
    reserveMemory: z.coerce.number().int().min(0).max(1 << 30).default(512),
    maxConsoleViewers: z.coerce.number().int().min(1).max(10_000).default(8),
    maxSnapshots: z.coerce.number().int().min(1).max(64).default(16),
    maxStreams: z.coerce.number().int().min(1).max(100_000).default(128),
    maxStreamsPerPeer: z.coerce.number().int().min(1).max(100_000).default(16),
    maxUnauthenticated: z.coerce.number().int().min(1).max(100_000).default(64),
    maxUnauthenticatedPerPeer: z.coerce.number().int().min(1).max(100_000).default(16),
    peerToken: z.string().min(16, "must be at least 16 characters").optional(),
    peerTokenFiles: z.array(absolutePath).default([]),
    tlsCert: absolutePath.optional(),
    tlsKey: absolutePath.optional(),
    tlsCa: absolutePath.optional().describe("PEM bundle of one or more CAs: a TCP client must present a certificate one of them signed"),
    insecureListen: z.boolean().default(false),
    insecureMigration: z.boolean().default(false),
    migrationChannels: z.coerce
      .number()
      .int()
      .min(1)
      .max(16)
      .default(1)
      .describe("RAM is sent over this many connections (qemu's multifd) when more than 1; the destination opens as many"),
    migrationHost: z
      .string()
      .regex(/^[A-Za-z0-9.:-]+$/, "must be an IP address or host name")
      .optional()
      .describe("address incoming migrations and NBD disk copies listen on; default the --listen host"),
    ovmfCode: absolutePath.default("/usr/share/OVMF/OVMF_CODE_4M.fd").describe("UEFI firmware code (Debian's ovmf)"),
    ovmfVars: absolutePath
      .optional()
      .describe("UEFI variable store template; default: the OVMF_VARS*.fd beside the code file whose size fits it"),
    etcd: z
      .string()
      .regex(/^https?:\/\/[^\s,]+(,https?:\/\/[^\s,]+)*$/, "expected URL[,URL...] (http:// or https://)")
      .optional()
      .describe("etcd endpoints; set = fleet mode"),
    etcdCa: absolutePath.optional(),
    etcdCert: absolutePath.optional(),
    etcdKey: absolutePath.optional(),
    etcdPrefix: z.string().regex(/^\/([A-Za-z0-9._-]+\/)*$/, "must start and end with '/'").default("/vmhostd/"),
    hostId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "letters, digits, '.', '_', '-' (max 63)").optional(),
    // Below 5 s a daemon restart on a loaded host can miss the fence's deadline (docs/fleet.md).
    leaseTtl: z.coerce.number().int().min(5, "must be at least 5 seconds").max(3600).default(10),
    watchdog: absolutePath
      .optional()
      .describe("fleet mode: a watchdog device the fence process pets while the lease is valid; a real one reboots the host when petting stops"),
    watchdogTimeout: z.coerce.number().int().min(1).max(3600).default(2).describe("seconds: the watchdog device's own timeout, as set on the device"),
    consoleOrigins: z
      .array(z.string().regex(/^https?:\/\/[^\s/,]+$/, "expected an origin: http(s)://HOST[:PORT]"))
      .default([])
      .describe("origins (the control panel's) whose pages may open a console WebSocket, besides the console page's own"),
    consoleUrl: z
      .string()
      .regex(/^https?:\/\/[^\s/?#]+(\/[^\s?#]*[^\s/?#])?$/, "expected http(s)://HOST[:PORT][/PATH], no trailing '/'")
      .optional()
      .describe("where browsers reach the TCP listener, for the URLs of console tickets; default http://<--listen>"),
    qmpPassthrough: z
      .enum(passthroughModes)
      .default("allowlist")
      .describe("POST /v1/vms/{name}/qmp: the allowlist of queries and guest-only actions, or every command"),
  })
  .strict()
  .refine((c) => !c.tlsCert === !c.tlsKey, { message: "--tls-cert and --tls-key go together", path: ["tlsCert"] })
  .refine((c) => !c.tlsCa || c.tlsCert, { message: "client certificates need the server's own: give --tls-cert and --tls-key", path: ["tlsCa"] })
  // Anything but loopback is reached across a network: the API, the token with it, is never sent there in clear unless said.
  .refine((c) => !c.listen || c.tlsCert || c.insecureListen || isLoopback(c.listen), {
    message: "is not a loopback address: give --tls-cert and --tls-key (HTTPS), or --insecure-listen to serve plain HTTP anyway",
    path: ["listen"],
  })
  .refine((c) => !c.etcdCert === !c.etcdKey, { message: "--etcd-cert and --etcd-key go together", path: ["etcdCert"] })
  .refine((c) => !c.watchdog || c.etcd, { message: "needs fleet mode (--etcd)", path: ["watchdog"] })
  // Renewals every TTL/4 must keep it petted: the timeout fits in half the TTL.
  .refine((c) => !c.watchdog || c.watchdogTimeout * 2 <= c.leaseTtl, { message: "must be at most half of --lease-ttl", path: ["watchdogTimeout"] })
  .transform((c) => ({
    ...c,
    socket: c.socket ?? path.join(c.runDir, "vmhostd.sock"),
    hostId: c.hostId ?? os.hostname(),
    // `images` is <state-dir>/images unless a --pool names it.
    pools: [
      ...c.pools.map((p) => ({ name: p.slice(0, p.indexOf("=")), dir: path.resolve(p.slice(p.indexOf("=") + 1)) })),
      ...(c.pools.some((p) => p.startsWith("images=")) ? [] : [{ name: "images", dir: path.join(c.stateDir, "images") }]),
    ],
  }));

/** 127.0.0.0/8, ::1 or localhost, from a HOST:PORT. */
export function isLoopback(hostPort: string): boolean {
  const host = hostPort.slice(0, hostPort.lastIndexOf(":")).replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** `peerToken` itself is not kept: every use of a token goes through `peerTokens`. */
export type Config = Omit<z.output<typeof configSchema>, "peerToken"> & {
  /**
   * The tokens a TCP request may carry, from --peer-token-file (in order), then --peer-token,
   * else $CREDENTIALS_DIRECTORY/peer-token. The first is the one this daemon sends to peers.
   */
  peerTokens: string[];
  /** --peer-token (or VMHOSTD_PEER_TOKEN) was given: visible to local users, warned about. */
  peerTokenInClear: boolean;
};

/** Flag name ↔ config key ↔ environment variable, in one table so help, parsing and errors agree. */
export const settings = [
  { key: "stateDir", flag: "state-dir", env: "VMHOSTD_STATE_DIR", help: "VM definitions, disks and logs" },
  { key: "runDir", flag: "run-dir", env: "VMHOSTD_RUN_DIR", help: "QMP sockets, pidfiles, runtime records" },
  { key: "socket", flag: "socket", env: "VMHOSTD_SOCKET", help: "HTTP API Unix socket (default <run-dir>/vmhostd.sock)" },
  { key: "listen", flag: "listen", env: "VMHOSTD_LISTEN", help: "also serve the API on TCP HOST:PORT" },
  { key: "accel", flag: "accel", env: "VMHOSTD_ACCEL", help: "kvm | tcg | auto (auto probes that KVM really runs a guest)" },
  { key: "qemu", flag: "qemu", env: "VMHOSTD_QEMU", help: "qemu-system binary" },
  { key: "qemuUser", flag: "qemu-user", env: "VMHOSTD_QEMU_USER", help: "user qemu runs as (per-VM uids from its /etc/subuid range); root only explicitly" },
  { key: "qemuImg", flag: "qemu-img", env: "VMHOSTD_QEMU_IMG", help: "qemu-img binary" },
  { key: "logLevel", flag: "log-level", env: "VMHOSTD_LOG_LEVEL", help: "fatal|error|warn|info|debug|trace|silent" },
  { key: "pools", flag: "pool", env: "VMHOSTD_POOLS", help: "storage pool NAME=DIR, repeatable (env: comma-separated)" },
  { key: "hostReservedMiB", flag: "host-reserved-mib", env: "VMHOSTD_HOST_RESERVED_MIB", help: "memory kept for the host; incoming VMs must fit beside it" },
  { key: "consoleLogMax", flag: "console-log-max", env: "VMHOSTD_CONSOLE_LOG_MAX", help: "serial console log kept per VM (bytes, K/M/G; default 8M)" },
  { key: "maxConnections", flag: "max-connections", env: "VMHOSTD_MAX_CONNECTIONS", help: "open HTTP connections per listener; more are closed at once" },
  { key: "reserveMemory", flag: "reserve-memory", env: "VMHOSTD_RESERVE_MEMORY", help: "MiB of free memory a start must leave to the host (default 512)" },
  { key: "maxConsoleViewers", flag: "max-console-viewers", env: "VMHOSTD_MAX_CONSOLE_VIEWERS", help: "serial console viewers per VM (default 8)" },
  { key: "maxSnapshots", flag: "max-snapshots", env: "VMHOSTD_MAX_SNAPSHOTS", help: "snapshots a VM may have; more are refused (default 16)" },
  { key: "maxStreams", flag: "max-streams", env: "VMHOSTD_MAX_STREAMS", help: "event streams and consoles open per listener (default 128)" },
  { key: "maxStreamsPerPeer", flag: "max-streams-per-peer", env: "VMHOSTD_MAX_STREAMS_PER_PEER", help: "event streams and consoles per TCP peer address (default 16)" },
  { key: "maxUnauthenticated", flag: "max-unauthenticated", env: "VMHOSTD_MAX_UNAUTHENTICATED", help: "TCP connections open without a valid token yet (default 64)" },
  { key: "maxUnauthenticatedPerPeer", flag: "max-unauthenticated-per-peer", env: "VMHOSTD_MAX_UNAUTHENTICATED_PER_PEER", help: "of those, per peer address (default 16)" },
  { key: "peerToken", flag: "peer-token", env: "VMHOSTD_PEER_TOKEN", help: "Bearer token required on TCP, given in clear (tests only: visible in /proc; logs a warning)" },
  { key: "peerTokenFiles", flag: "peer-token-file", env: "VMHOSTD_PEER_TOKEN_FILE", help: "file holding a Bearer token accepted on TCP (0600), repeatable; the first is sent to peers (env: comma-separated)" },
  { key: "tlsCert", flag: "tls-cert", env: "VMHOSTD_TLS_CERT", help: "this host's certificate (PEM): the TCP API is HTTPS; also its client certificate towards peers" },
  { key: "tlsKey", flag: "tls-key", env: "VMHOSTD_TLS_KEY", help: "the private key of --tls-cert (PEM)" },
  { key: "tlsCa", flag: "tls-ca", env: "VMHOSTD_TLS_CA", help: "CA bundle (PEM): TCP clients must present a certificate one of them signed; peers are verified against it" },
  { key: "insecureListen", flag: "insecure-listen", env: "VMHOSTD_INSECURE_LISTEN", help: "allow --listen on a non-loopback address without TLS (logs a warning)" },
  { key: "insecureMigration", flag: "insecure-migration", env: "VMHOSTD_INSECURE_MIGRATION", help: "allow migrations in clear (no --tls-ca) to or from a non-loopback address (logs a warning)" },
  { key: "migrationChannels", flag: "migration-channels", env: "VMHOSTD_MIGRATION_CHANNELS", help: "connections a migration out sends RAM over (multifd), 1-16 (default 1)" },
  { key: "migrationHost", flag: "migration-host", env: "VMHOSTD_MIGRATION_HOST", help: "address incoming migrations listen on" },
  { key: "ovmfCode", flag: "ovmf-code", env: "VMHOSTD_OVMF_CODE", help: "UEFI firmware code file (OVMF)" },
  { key: "ovmfVars", flag: "ovmf-vars", env: "VMHOSTD_OVMF_VARS", help: "UEFI variable store template (default: found beside the code by size)" },
  { key: "etcd", flag: "etcd", env: "VMHOSTD_ETCD", help: "fleet mode: etcd endpoints URL[,URL...]" },
  { key: "etcdCa", flag: "etcd-ca", env: "VMHOSTD_ETCD_CA", help: "CA certificate for etcd TLS" },
  { key: "etcdCert", flag: "etcd-cert", env: "VMHOSTD_ETCD_CERT", help: "client certificate for etcd TLS" },
  { key: "etcdKey", flag: "etcd-key", env: "VMHOSTD_ETCD_KEY", help: "client key for etcd TLS" },
  { key: "etcdPrefix", flag: "etcd-prefix", env: "VMHOSTD_ETCD_PREFIX", help: "key prefix in etcd (default /vmhostd/)" },
  { key: "hostId", flag: "host-id", env: "VMHOSTD_HOST_ID", help: "this host's id in the fleet (default the hostname)" },
  { key: "leaseTtl", flag: "lease-ttl", env: "VMHOSTD_LEASE_TTL", help: "host lease TTL in seconds, at least 5 (default 10)" },
  { key: "watchdog", flag: "watchdog", env: "VMHOSTD_WATCHDOG", help: "fleet mode: watchdog device the fence pets while the lease is valid (a real one REBOOTS the host)" },
  { key: "watchdogTimeout", flag: "watchdog-timeout", env: "VMHOSTD_WATCHDOG_TIMEOUT", help: "seconds: the watchdog device's timeout, at most half the lease TTL (default 2)" },
  { key: "consoleOrigins", flag: "console-origin", env: "VMHOSTD_CONSOLE_ORIGINS", help: "origin allowed to open console WebSockets besides the page's own, repeatable (env: comma-separated)" },
  { key: "consoleUrl", flag: "console-url", env: "VMHOSTD_CONSOLE_URL", help: "base of console ticket URLs as browsers reach the listener (default http(s)://<listen>)" },
  { key: "qmpPassthrough", flag: "qmp-passthrough", env: "VMHOSTD_QMP_PASSTHROUGH", help: "allowlist | all: which QMP commands POST .../qmp runs (default allowlist)" },
] as const;

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`invalid setting ${setting}: ${message}`);
    this.name = "ConfigError";
  }
}

export function usage(): string {
  const lines = settings.map((s) => `  --${s.flag.padEnd(12)} ${s.env.padEnd(20)} ${s.help}`);
  return `usage: vmhostd [options]\n\n  flag           environment\n${lines.join("\n")}\n`;
}

/** Reads flags then environment; throws ConfigError naming the flag and variable of a bad value. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  let values: Record<string, unknown>;
  try {
    values = parseArgs({
      args: argv,
      options: Object.fromEntries([
        ...settings.map((s) => [s.flag, isFlag(s.key) ? { type: "boolean" as const } : { type: "string" as const, multiple: isList(s.key) }]),
        ["help", { type: "boolean" as const, short: "h" }],
      ]),
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new ConfigError("arguments", (err as Error).message);
  }
  if (values.help) throw new ConfigError("help", usage());

  const raw: Record<string, string | string[] | boolean> = {};
  for (const s of settings) {
    const v = values[s.flag] ?? env[s.env];
    if (isList(s.key)) {
      const list = Array.isArray(v) ? v.flatMap((x: string) => (s.key === "consoleOrigins" ? x.split(",") : [x])) : typeof v === "string" && v !== "" ? v.split(",") : [];
      if (list.length) raw[s.key] = list as string[];
    } else if (isFlag(s.key)) {
      raw[s.key] = v === true || (typeof v === "string" && /^(1|true|yes)$/i.test(v));
    } else if (typeof v === "string" && v !== "") raw[s.key] = v;
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const s = settings.find((x) => x.key === issue.path[0]);
    const name = s ? `--${s.flag} (${s.env})` : String(issue.path.join("."));
    throw new ConfigError(name, issue.message);
  }
  const { peerToken, ...c } = parsed.data;
  let peerTokens: string[];
  try {
    peerTokens = readPeerTokens(c.peerTokenFiles, peerToken, env.CREDENTIALS_DIRECTORY);
  } catch (err) {
    if (err instanceof TokenFileRefused) throw new ConfigError(err.setting, err.message);
    throw err;
  }
  // The TCP listener reaches every VM on the host: it is never open without a token.
  if (c.listen && peerTokens.length === 0) {
    throw new ConfigError("--peer-token-file (VMHOSTD_PEER_TOKEN_FILE)", "is required with --listen (or a peer-token credential: systemd LoadCredential=)");
  }
  return { ...c, peerTokens, peerTokenInClear: peerToken !== undefined };
}

/** Settings given as a bare flag (`--insecure-listen`), or in the environment as 1/true/yes. */
function isFlag(key: string): boolean {
  return key === "insecureListen" || key === "insecureMigration";
}

function isList(key: string): boolean {
  return key === "pools" || key === "peerTokenFiles" || key === "consoleOrigins";
}

/** Longest Unix socket path the daemon creates below run-dir: sun_path holds 107 bytes. */
export function checkSocketPathRoom(config: Config): void {
  const longest = path.join(config.runDir, "vms", "x".repeat(63), "qemu", "qmp-debug.sock");
  if (Buffer.byteLength(longest) > 107) {
    throw new ConfigError("--run-dir (VMHOSTD_RUN_DIR)", `too long for Unix socket paths (${longest.length} > 107 bytes)`);
  }
}
