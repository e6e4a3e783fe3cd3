// How every bench starts and ends: `--smoke` (one run with few VMs, what
// `npm test` runs so that a change breaking a bench fails there), and a run whose
// first error is the one reported. Clean-ups run afterwards in reverse order; a
// clean-up that fails is reported as such, after that first error, never in its
// place (a bench that failed half-way often leaves its directories in a state
// that makes removing them fail too).

/** True when the bench was asked for its smoke mode (`--smoke`). */
export function smokeMode(argv: readonly string[] = process.argv): boolean {
  return argv.includes("--smoke");
}

/** The value of `--name N`, or `fallback` when absent; anything but a number ≥ 0 is an error naming the flag. */
export function numberArg(name: string, fallback: number, argv: readonly string[] = process.argv): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(argv[i + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a number, not ${String(argv[i + 1])}`);
  return value;
}

export class BenchRun {
  private readonly cleanups: Array<() => Promise<unknown>> = [];
  private interrupted = false;

  constructor(readonly name: string) {}

  /** Registers a clean-up; they run last-registered first, whether the bench failed or not. */
  defer(cleanup: () => Promise<unknown>): void {
    this.cleanups.push(cleanup);
  }

  /** Runs the bench; sets the exit code to 1 on failure. Ctrl-C and SIGTERM clean up too. */
  async run(main: () => Promise<void>): Promise<void> {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      process.once(sig, () => {
        this.interrupted = true;
        process.stderr.write(`${this.name}: ${sig}, cleaning up\n`);
        void this.cleanUp().finally(() => process.exit(130));
      });
    }
    try {
      await main();
    } catch (err) {
      // After an interrupt main fails on the things the clean-up removed under it: not worth reporting.
      if (!this.interrupted) process.stderr.write(`${this.name}: ${describe(err)}\n`);
      process.exitCode = 1;
    } finally {
      await this.cleanUp();
    }
  }

  private async cleanUp(): Promise<void> {
    for (const c of this.cleanups.splice(0).reverse()) {
      await c().catch((err: unknown) => process.stderr.write(`${this.name}: clean-up failed (reported after any error above): ${describe(err)}\n`));
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
