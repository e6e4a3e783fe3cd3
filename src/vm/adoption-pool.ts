// Adoption at a daemon's start runs a bounded number of VMs at a time. Each
// adoption reads a few files, checks /proc, opens a QMP connection and asks qemu
// one question: all waiting, little CPU. Unbounded, 500 of them at once would open
// 500 sockets and files together and make every VM wait for the slowest; bounded,
// the first ones are shown adopted while later ones are still queued. A qemu that
// does not answer holds its slot for at most the adoption's QMP budget
// (vm-adoption.ts), after which it is retried in the background, outside the pool.

/** VMs adopted at once: enough to keep both CPUs busy while each waits on qemu, few enough to bound open sockets. */
export const ADOPTION_PARALLEL = 16;

/**
 * Runs `work` for every item, at most `parallel` at a time, in the items' order;
 * resolves once every one has settled. A rejection is `work`'s own to handle: it
 * is not allowed to stop the others.
 */
export async function runBounded<T>(items: readonly T[], parallel: number, work: (item: T) => Promise<void>): Promise<void> {
  if (!Number.isInteger(parallel) || parallel < 1) throw new RangeError(`parallel must be a positive integer, not ${parallel}`);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item).catch(() => {});
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
}
