// onCrash: "stop" leaves a crashed VM crashed for the operator; "restart" starts
// it again after a back-off that doubles with each crash in quick succession,
// and gives up after a limit so a guest that crashes at boot does not spin.
import type { Logger } from "pino";
import type { Vm } from "./vm.js";

const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 60_000;
const MAX_RESTARTS = 5;
/** A run longer than this resets the count: the guest was healthy for a while. */
const HEALTHY_RUN_MS = 10 * 60_000;

export class CrashPolicy {
  private readonly history = new Map<string, { count: number; lastRestart: number }>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly log: Logger,
    private readonly restart: (vm: Vm) => Promise<unknown>,
  ) {}

  onCrash(vm: Vm): void {
    if (vm.definition.onCrash !== "restart") return;
    const now = Date.now();
    const h = this.history.get(vm.name) ?? { count: 0, lastRestart: 0 };
    if (now - h.lastRestart > HEALTHY_RUN_MS) h.count = 0;
    if (h.count >= MAX_RESTARTS) {
      vm.log.error({ restarts: h.count }, "onCrash restart: limit reached, leaving the VM crashed");
      vm.publish("vm.restart-limit", { restarts: h.count });
      return;
    }
    const delay = Math.min(FIRST_DELAY_MS * 2 ** h.count, MAX_DELAY_MS);
    h.count += 1;
    h.lastRestart = now + delay;
    this.history.set(vm.name, h);
    vm.log.warn({ delayMs: delay, attempt: h.count }, "onCrash restart: restarting after back-off");
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.restart(vm).catch((err) => this.log.error({ vm: vm.name, err }, "onCrash restart failed"));
    }, delay);
    this.timers.add(timer);
  }

  cancelAll(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
