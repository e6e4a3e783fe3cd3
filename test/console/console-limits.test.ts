// Noisy clients of one VM's console and of the event stream: beyond
// --max-console-viewers a viewer is refused with 429 before the upgrade, beyond
// --max-streams (consoles and event streams together, per listener) so is any
// stream, and the viewers already attached keep receiving the guest's output.
import t from "tap";
import { defineShellVm, startDaemon, waitForBoot, waitForConsole, type TestDaemon } from "../helpers/daemon.js";
import { openConsole, RefusedUpgrade, type ConsoleClient } from "../helpers/console-socket.js";
import { holdEventStream, type HeldStream } from "../helpers/event-stream.js";

const VM = "noisy";

/** Opens /v1/events on the Unix socket. */
function events(d: TestDaemon): Promise<HeldStream> {
  return holdEventStream({ socketPath: d.socket });
}

async function refused(d: TestDaemon, mode?: "ro" | "rw"): Promise<RefusedUpgrade> {
  const err = await openConsole(d, VM, mode).then(
    (c) => {
      c.ws.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  if (!(err instanceof RefusedUpgrade)) throw new Error(`expected a refused upgrade, got ${String(err)}`);
  return err;
}

t.test("console viewers and streams are capped; those attached keep receiving", async (t) => {
  const d = await startDaemon({ args: ["--max-console-viewers", "3", "--max-streams", "5"] });
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await waitForBoot(d, VM, 1);
  await waitForConsole(d, VM, /vmh# /);

  const writer = await openConsole(d, VM, "rw");
  const viewers: ConsoleClient[] = [await openConsole(d, VM), await openConsole(d, VM)];
  const over = await refused(d);
  t.equal(over.status, 429, "a fourth viewer is refused before the upgrade");
  t.match(over.problem, { code: "VMH_ERR_TOO_MANY_CLIENTS", scope: "console-viewers", limit: 3, vm: VM });
  t.equal((await refused(d, "rw")).problem.code, "VMH_ERR_CONSOLE_BUSY", "a second writer is still told the console has one");

  writer.type("echo $((6*7))-after-refusal\n");
  await writer.waitFor(/^42-after-refusal\r?$/m);
  for (const [i, v] of viewers.entries()) {
    await v.waitFor(/^42-after-refusal\r?$/m);
    t.pass(`viewer ${i + 1} still receives the guest's output`);
  }

  // The listener's cap counts consoles and event streams together: 3 consoles + 2 streams.
  const s1 = await events(d);
  const s2 = await events(d);
  t.equal(s1.status + s2.status, 400, "two event streams open beside three consoles");
  const s3 = await events(d);
  t.equal(s3.status, 429, "a sixth stream on the listener is refused");
  t.match(JSON.parse(s3.body), { code: "VMH_ERR_TOO_MANY_CLIENTS", scope: "listener", limit: 5 });
  viewers.pop()!.ws.close();
  // The closed viewer's place is free once the daemon has seen the close: a new stream gets it.
  let s4 = await events(d);
  for (let i = 0; i < 20 && s4.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    s4 = await events(d);
  }
  t.equal(s4.status, 200, "a place freed by a closed console is taken by an event stream");
  const full = await refused(d);
  t.equal(full.status, 429, "then a console is refused by the listener's cap");
  t.match(full.problem, { code: "VMH_ERR_TOO_MANY_CLIENTS", scope: "listener" });
  t.equal((await d.api.request("GET", `/v1/vms/${VM}`)).status, 200, "plain requests are still served");
  writer.type("echo $((7*8))-still\n");
  await viewers[0]!.waitFor(/^56-still\r?$/m);
  t.pass("the remaining viewer still receives");

  for (const s of [s1, s2, s4]) s.close();
  writer.ws.close();
  viewers[0]!.ws.close();
});
