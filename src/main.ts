#!/usr/bin/env -S node --lite-mode --no-expose-wasm --max-semi-space-size=1
// The node flags above (also in systemd/vmhostd.service and `npm start`) keep the
// daemon small: it spends its time waiting on sockets, so V8's optimising compiler
// and a large young generation buy nothing but memory. Lite mode has no
// WebAssembly, hence no global fetch(): talk HTTP through node:http.
// vmhostd: read the settings, open the stores, adopt the VMs that are already
// running, serve the API, and on SIGTERM leave every VM running.
import { chmod, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino, type Logger } from "pino";
import { checkSocketPathRoom, ConfigError, isLoopback, loadConfig, type Config } from "./config.js";
import { EventBus } from "./events/event-bus.js";
import { HostInventory } from "./host/host-inventory.js";
import { readHostProbes } from "./host/host-probes.js";
import { SystemdNotifier } from "./host/sd-notify.js";
import { buildHttpApp } from "./http/http-app.js";
import { ConsoleTicketStore } from "./vm/console/console-tickets.js";
import { QemuUserError, QemuUsers } from "./qemu/qemu-user.js";
import { checkReachable } from "./qemu/qemu-files.js";
import { DefinitionStore } from "./store/definition-store.js";
import { QemuImg } from "./storage/qemu-img.js";
import { StoragePools } from "./storage/storage-pools.js";
import { DiskBackups } from "./vm/operations/disk-backup.js";
import { VmSnapshots } from "./vm/snapshots/vm-snapshots.js";
import type { HostContext } from "./vm/host-context.js";
import { VmRegistry } from "./vm/vm-registry.js";
import { JobRegistry } from "./jobs/job-registry.js";
import { MigrationSource } from "./migration/migration-source.js";
import { MigrationTarget } from "./migration/migration-target.js";
import { OutcomeStore } from "./migration/outcome-store.js";
import { setAdoptionDuration } from "./metrics/metric-hooks.js";
import { HostMaintenance } from "./host/maintenance/host-maintenance.js";
import { TlsFileRefused, TlsFiles } from "./tls/tls-files.js";

/** How long start-up waits for adoption before opening the API anyway. */
const ADOPTION_WAIT_MS = 1_500;

async function main(): Promise<void> {
  let config: Config;
  let tls: TlsFiles | undefined;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
    checkSocketPathRoom(config);
    tls = await TlsFiles.load(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.setting === "help" ? err.message.replace(/^invalid setting help: /, "") : `vmhostd: ${err.message}\n`);
      process.exit(err.setting === "help" ? 0 : 2);
    }
    if (err instanceof TlsFileRefused) {
      process.stderr.write(`vmhostd: invalid setting ${err.setting}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Read once; no part of the daemon looks for it in the environment again.
  delete process.env.VMHOSTD_PEER_TOKEN;
  // No code logs these on purpose; should a definition, an action or a request's headers reach a log line
  // whole, the user-data (often passwords and keys) and the bearer token are still left out.
  const redact = ["cloudInit.userData", "definition.cloudInit.userData", "headers.authorization"];
  const log = pino({
    level: config.logLevel,
    base: { pid: process.pid },
    redact: { paths: [...redact, ...redact.map((p) => `*.${p}`)], censor: "<redacted>" },
  });
  if (config.peerTokenInClear) {
    log.warn("--peer-token (VMHOSTD_PEER_TOKEN) gives the token in clear, where local users and logs may see it: use --peer-token-file or systemd LoadCredential=peer-token");
  }
  if (config.listen && !tls && config.insecureListen && !isLoopback(config.listen)) {
    log.warn({ listen: config.listen }, "--insecure-listen: the API and its token cross the network in clear (no --tls-cert)");
  }
  if (config.insecureMigration && !tls?.verifiesClients) {
    log.warn("--insecure-migration: migrations to and from other hosts send guest RAM and disks in clear (no --tls-ca)");
  }
  // SIGHUP (systemctl reload): new certificates for new connections; guests and open connections untouched.
  // Handled from here on: node's default for it would end the daemon.
  const reloading = tls;
  process.on("SIGHUP", () => {
    if (!reloading) return log.info("SIGHUP: no --tls-cert, nothing to reload");
    reloading.reload().then(
      () => log.info({ cert: config.tlsCert, ca: config.tlsCa }, "TLS certificates reloaded"),
      (err: Error) => log.error({ err: err.message }, "TLS certificates not reloaded; the previous ones stay in use"),
    );
  });
  try {
    await run(config, log, tls);
  } catch (err) {
    log.fatal({ err }, "vmhostd cannot start");
    process.exit(1);
  }
}

/**
 * An unprivileged qemu must be able to pass through the state, run and pool
 * directories (x for others or the qemu group). Said once at start, naming the
 * directory, rather than at every VM's start.
 */
async function checkQemuCanReach(config: Config, pools: StoragePools, users: QemuUsers, log: Logger): Promise<void> {
  const gid = users.gid;
  if (gid === undefined) return;
  // uid 2^31 stands for any VM uid: none owns these directories.
  const anyVm = { uid: 2 ** 31, gid };
  const dirs = [path.join(config.stateDir, "vms"), path.join(config.runDir, "vms"), ...pools.list().map((p) => p.dir)];
  for (const dir of dirs) {
    await mkdir(dir, { recursive: true, mode: 0o711 });
    try {
      await checkReachable(path.join(dir, "x"), anyVm);
    } catch (err) {
      log.fatal({ dir, err: (err as Error).message }, "qemu's user cannot reach a directory it needs");
      throw err;
    }
  }
}

async function run(config: Config, log: Logger, tls: TlsFiles | undefined): Promise<void> {
  const started = performance.now();
  const notifier = SystemdNotifier.fromEnv(process.env, log);
  await mkdir(config.stateDir, { recursive: true, mode: 0o755 });
  await mkdir(path.join(config.runDir, "vms"), { recursive: true, mode: 0o755 });

  let qemuUsers: QemuUsers;
  try {
    const fileDirs = [config.stateDir, config.runDir, ...config.pools.map((p) => p.dir)];
    qemuUsers = await QemuUsers.load(config.qemuUser, config.stateDir, fileDirs, log);
  } catch (err) {
    if (!(err instanceof QemuUserError)) throw err;
    process.stderr.write(`vmhostd: invalid setting --qemu-user (VMHOSTD_QEMU_USER): ${err.message}\n`);
    process.exit(2);
  }

  if (config.qmpPassthrough === "all") {
    log.warn("--qmp-passthrough=all: POST /v1/vms/{name}/qmp runs any QMP command, including ones that open files and listeners on this host");
  }
  // From the state directory's probe cache when qemu and the kernel are unchanged: no child process at start.
  const { qemuVersion, accel, ioUring } = await readHostProbes(config, log);
  const pools = new StoragePools(config.pools);
  await pools.init();
  await checkQemuCanReach(config, pools, qemuUsers, log);
  const store = new DefinitionStore(config.stateDir, config.runDir);
  await store.init();

  const host: HostContext = {
    config,
    accel,
    ioUring,
    qemuVersion,
    qemuUsers,
    pools,
    qemuImg: new QemuImg(config.qemuImg),
    store,
    bus: new EventBus(),
    log,
    stopping: new AbortController(),
    ...(tls ? { tls } : {}),
  };
  if (config.etcd) {
    // Loaded only in fleet mode: a single host keeps etcd3 and gRPC out of its memory.
    const { FleetMember } = await import("./fleet/fleet-member.js");
    host.fleet = await FleetMember.connect(config, log);
  }
  const registry = new VmRegistry(host);
  const jobs = new JobRegistry(host.bus);
  // Before adoption: a host left in maintenance refuses starts (a crashed VM's restart too) from its first moment.
  const maintenance = new HostMaintenance(host, registry, jobs);
  await maintenance.load();
  registry.hostGate = (name, action) => maintenance.refuse(name, action);
  // The lease first: a restarted daemon resumes it before adoption looks for its owner keys.
  if (host.fleet) {
    const fleet = host.fleet;
    fleet.ownedHa = () => registry.list().filter((vm) => vm.owner?.ha).map((vm) => vm.name);
    fleet.on("lease-lost", () => {
      registry.ownership.leaseLost(registry.list());
      host.bus.publish("host.lease-lost", undefined, { hostId: fleet.hostId });
    });
    const fleetInventory = new HostInventory(host, registry, () => maintenance.view());
    fleet.describeHost = () => fleetInventory.registryEntry();
    await fleet.start();
  }
  // Each migration received here: its outcome, answered after any restart.
  const outcomes = new OutcomeStore(config.stateDir, log);
  await outcomes.init();
  const target = new MigrationTarget(host, registry, outcomes);
  const source = new MigrationSource(host, registry, jobs);
  const backups = new DiskBackups(host, jobs);
  const migration = { jobs, target };
  const snapshots = new VmSnapshots(host, jobs);
  registry.snapshots = snapshots;
  registry.jobActions = {
    backup: (vm, action) => backups.prepare(vm, action),
    migrate: (vm, action) => source.prepare(vm, action),
    deleteSnapshot: (vm, action) => snapshots.prepareDelete(vm, action),
  };
  // A migration cut short by a restart of this daemon is finished or rolled back by its own side.
  registry.recoverMigration = {
    out: (vm, action, entry) => source.recover(vm, action, entry),
    in: (vm, entry) => target.recover(vm, entry),
  };
  await registry.load();
  if (host.fleet) {
    // After load, so the first state it writes already lists every ha VM.
    const { FenceSupervisor } = await import("./fleet/fence/fence-supervisor.js");
    // Each ha VM with the identity of its running qemu, as recorded at its start.
    const haVms = () =>
      registry
        .list()
        .filter((vm) => vm.definition.ha)
        .map((vm) => {
          const r = vm.session?.record;
          const qemu = r ? { pid: r.pid, startTicks: r.procStartTicks, uuid: r.uuid, ...(r.exe ? { exe: r.exe } : {}) } : undefined;
          return { name: vm.name, uuid: vm.definition.uuid, ...(qemu ? { qemu } : {}) };
        });
    const watchdog = config.watchdog ? { device: config.watchdog, timeoutMs: config.watchdogTimeout * 1000 } : undefined;
    await new FenceSupervisor(config.runDir, host.fleet, haVms, log, { ...(watchdog ? { watchdog } : {}) }).start();
  }
  // The API opens once adoption settles (bar qemus slow to answer), or after a short wait: a hung qemu must not keep it closed.
  await Promise.race([registry.answered, sleep(ADOPTION_WAIT_MS)]);
  host.bus.publish("daemon.started", undefined, { qemuVersion, accel });

  const inventory = new HostInventory(host, registry, () => maintenance.view());
  const storage = { pools };
  const streams = { total: config.maxStreams, perPeer: config.maxStreamsPerPeer };
  // One store for both listeners: a panel mints on either, the browser opens on TCP.
  const consoles = { tickets: new ConsoleTicketStore(), origins: config.consoleOrigins, urlBase: config.consoleUrl ?? (config.listen ? `${tls ? "https" : "http"}://${config.listen}` : "") };
  const unixApp = buildHttpApp({ registry, inventory, migration, maintenance, storage, log, maxConnections: config.maxConnections, streams, consoles });
  await rm(config.socket, { force: true });
  await mkdir(path.dirname(config.socket), { recursive: true });
  await unixApp.listen({ path: config.socket });
  // Access to the API is access to every VM: owner and group only.
  await chmod(config.socket, 0o660);
  const apps = [unixApp];
  if (config.listen) {
    const tcpApp = buildHttpApp({
      registry,
      inventory,
      migration,
      maintenance,
      storage,
      log,
      peerTokens: config.peerTokens,
      ...(tls ? { tls } : {}),
      maxConnections: config.maxConnections,
      streams,
      consoles,
      unauthenticated: { total: config.maxUnauthenticated, perPeer: config.maxUnauthenticatedPerPeer },
    });
    const sep = config.listen.lastIndexOf(":");
    await tcpApp.listen({ host: config.listen.slice(0, sep).replace(/^\[|\]$/g, ""), port: Number(config.listen.slice(sep + 1)) });
    apps.push(tcpApp);
  }
  log.info(
    { socket: config.socket, listen: config.listen, tls: tls ? (tls.verifiesClients ? "mutual" : "server") : "none", accel, qemuVersion },
    "API listening",
  );
  notifier?.startWatchdog();
  void registry.adopted.then(async () => {
    setAdoptionDuration((performance.now() - started) / 1000);
    const vms = registry.list();
    const running = vms.filter((v) => v.session).length;
    log.info({ vms: vms.length, running, ms: Math.round(performance.now() - started) }, "VMs adopted");
    host.bus.publish("daemon.adopted", undefined, { vms: vms.length, running });
    await target.settleRecords().catch((err: unknown) => log.error({ err }, "settling the migration outcome records failed"));
    // Once every VM is adopted (and an interrupted migration is in its recovery's hands).
    maintenance.carryOn();
    // systemd's readiness means "every VM is adopted", not merely "the socket is open".
    notifier?.ready(`${vms.length} VMs, ${running} running; serving ${config.socket}`);
    for (const orphan of await registry.orphans()) {
      log.warn({ orphan }, "a qemu of this run directory belongs to no VM; left running for the operator");
      host.bus.publish("host.orphan-qemu", orphan.name, { ...orphan });
    }
  });

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    notifier?.stopping();
    log.info({ signal }, "stopping: VMs keep running");
    maintenance.stop();
    // Operations first (new ones refused, waits cut short), then the listeners, whose
    // close waits for the requests those operations were answering.
    await registry.close();
    await Promise.all(apps.map((a) => a.close()));
    host.fleet?.close();
    log.info("stopped");
    process.exit(0);
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => void shutdown(sig));
}

void main();
