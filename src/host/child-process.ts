// Every program the daemon runs (qemu, qemu-img, ip, xorriso, getconf, the fence
// process, the sd_notify helper) is started here, with an argv array and an
// environment of its own: PATH and LANG, nothing of the daemon's. The daemon's
// environment may hold the peer token (VMHOSTD_PEER_TOKEN) and systemd's
// variables; a child that inherited them would show them in /proc/PID/environ to
// its own uid, and qemu runs as a VM's uid. test/host/child-process.unit.test.ts
// checks that no other file under src/ imports node:child_process.
import { execFile, spawn, type ChildProcess, type ExecFileOptions, type SpawnOptions } from "node:child_process";
import { promisify } from "node:util";

/** The whole environment of a child. */
export const CHILD_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  LANG: "C.UTF-8",
});

export type ChildSpawnOptions = Omit<SpawnOptions, "env" | "shell">;
export type ChildExecOptions = Omit<ExecFileOptions, "env" | "shell" | "encoding">;

/** A child process; `options` cannot name an environment or a shell. */
export function spawnChild(file: string, args: readonly string[], options: ChildSpawnOptions = {}): ChildProcess {
  return spawn(file, args, { ...options, env: { ...CHILD_ENV }, shell: false });
}

const execFileText = promisify(execFile);

/**
 * Runs a program to its end and resolves with its output. A failure rejects with
 * execFile's error: `code` (exit status), `killed`, `stdout` and `stderr` set.
 */
export async function execChild(file: string, args: readonly string[], options: ChildExecOptions = {}): Promise<{ stdout: string; stderr: string }> {
  return execFileText(file, args, { ...options, env: { ...CHILD_ENV }, shell: false, encoding: "utf8" });
}
