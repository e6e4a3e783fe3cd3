// vmctl console against the test guest's shell: from a pipe (keys in, output
// out, Ctrl-] detaches), on a terminal (a pty from script(1): raw mode, so Ctrl-C
// reaches the guest rather than killing vmctl), read-only, and refused as a
// second writer.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { startDaemon, vmctlJs, waitForConsole, type TestDaemon, defineShellVm } from "../helpers/daemon.js";
import { openConsole } from "../helpers/console-socket.js";

const VM = "vcon";

interface Vmctl {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  waitOut(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Resolves once vmctl says it is attached. */
  attached(): Promise<void>;
  exit: Promise<number | null>;
}

function vmctl(d: TestDaemon, args: string[], stdin: "pipe" | "ignore" = "pipe", viaPty = false): Vmctl {
  const argv = [vmctlJs, "--socket", d.socket, ...args];
  // script(1) gives vmctl a terminal: -q quiet, -f flush at once, -e pass on its exit status.
  const proc = viaPty
    ? spawn("script", ["-qfec", [process.execPath, ...argv].map((a) => `'${a}'`).join(" "), "/dev/null"], { stdio: [stdin, "pipe", "pipe"] })
    : spawn(process.execPath, argv, { stdio: [stdin, "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout!.on("data", (c: Buffer) => out.push(c));
  proc.stderr!.on("data", (c: Buffer) => err.push(c));
  const stdout = (): string => Buffer.concat(out).toString();
  return {
    proc,
    stdout,
    stderr: () => Buffer.concat(err).toString(),
    exit: new Promise((resolve) => proc.on("exit", (code) => resolve(code))),
    async waitOut(pattern, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      while (!pattern.test(stdout())) {
        if (Date.now() > until) throw new Error(`vmctl did not print ${pattern}; got:\n${stdout().slice(-1000)}`);
        await sleep(50);
      }
    },
    async attached() {
      const until = Date.now() + 10_000;
      // Through script(1) stderr arrives on stdout, like everything on a terminal.
      while (!/Escape character is \^\]/.test(Buffer.concat([...err, ...out]).toString())) {
        if (Date.now() > until) throw new Error(`vmctl did not attach:\n${Buffer.concat(err).toString()}`);
        await sleep(50);
      }
    },
  };
}

t.test("vmctl console", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await waitForConsole(d, VM, /vmh# /);

  await t.test("from a pipe: keys in, output out, Ctrl-] detaches", async (t) => {
    const c = vmctl(d, ["console", VM]);
    c.proc.stdin!.write("echo $((6*7))\n");
    await c.waitOut(/^42\r?$/m);
    c.proc.stdin!.write("\x1d");
    t.equal(await c.exit, 0, "detaching is a success");
    t.match(c.stderr(), /\[detached\]/);
  });

  await t.test("read-only: watches, leaves the writer's place free, ends when the VM stops", async (t) => {
    const watcher = vmctl(d, ["console", VM, "--read-only"], "ignore");
    await watcher.attached();
    const writer = await openConsole(d, VM, "rw");
    writer.type("echo ro-$((3*3))\n");
    await watcher.waitOut(/^ro-9\r?$/m);
    t.pass("a read-only vmctl prints what the guest prints");

    const second = vmctl(d, ["console", VM]);
    t.equal(await second.exit, 1, "a second writer is refused");
    t.match(second.stderr(), /already has a writer.*VMH_ERR_CONSOLE_BUSY, HTTP 409/);
    writer.ws.close();
    await writer.closed;

    if (!existsSync("/usr/bin/script")) {
      t.comment("script(1) missing: no pty for the raw-mode check");
    } else {
      const tty = vmctl(d, ["console", VM], "pipe", true);
      await tty.attached();
      tty.proc.stdin!.write("sleep 1000\n");
      await sleep(500);
      tty.proc.stdin!.write("\x03"); // Ctrl-C, a byte like any other in raw mode
      tty.proc.stdin!.write("echo tty-$((5*5))\n");
      await tty.waitOut(/^tty-25\r?$/m);
      t.pass("on a terminal, Ctrl-C went to the guest's shell and vmctl stayed");
      tty.proc.stdin!.write("\x1d");
      t.equal(await tty.exit, 0, "Ctrl-] detaches from a terminal too");
    }

    await d.api.json("POST", `/v1/vms/${VM}/stop`);
    t.equal(await watcher.exit, 0, "a viewer ends when the VM stops");
    t.match(watcher.stderr(), /\[the VM stopped\]/);
  });
});
