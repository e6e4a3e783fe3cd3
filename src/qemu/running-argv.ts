// What a qemu that is already running was started with, read back from the argv
// recorded when it was spawned. That qemu may have been started by an older
// daemon, whose plan this one cannot rebuild: its argv is the only record of its
// devices. (A start never reads its own argv back: it has the plan.)
import { layoutLine } from "./plan-layout.js";

type RecordedDevice = { driver?: unknown; id?: unknown; bus?: unknown };

/** Each `-device` of the argv: its JSON parsed, or the legacy key=value text as it is. */
function recordedDevices(argv: readonly string[]): (RecordedDevice | string)[] {
  return argv.flatMap((a, i) => {
    if (argv[i - 1] !== "-device") return [];
    return [a.startsWith("{") ? (JSON.parse(a) as RecordedDevice) : a];
  });
}

const text = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** The running qemu's devices as plan-layout.ts's lines; a legacy `-device` stays its own text. */
export function runningDeviceLayout(argv: readonly string[]): string[] {
  return recordedDevices(argv).map((d) =>
    typeof d === "string" ? d : layoutLine({ driver: text(d.driver), id: text(d.id), bus: text(d.bus) }),
  );
}

/** The ids of the running qemu's devices that have one. */
export function runningDeviceIds(argv: readonly string[]): string[] {
  return recordedDevices(argv).flatMap((d) => (typeof d !== "string" && typeof d.id === "string" ? [d.id] : []));
}
