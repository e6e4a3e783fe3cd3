// The QMP client's error tree, after qemu's python/qemu/qmp/error.py: one base
// class so a caller can catch "anything QMP", and one subclass per way a command
// can fail, so the VM layer maps them to domain errors without reading messages.
// These are protocol errors, not user-facing ones: src/errors.ts owns those.

/** Base of every error the QMP client raises. */
export class QmpError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The socket would not connect, or qemu did not greet and accept capabilities in time. */
export class QmpConnectError extends QmpError {
  constructor(
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`QMP ${path}: ${message}`, options);
  }
}

/**
 * The connection is gone. Every command still waiting for its reply rejects with
 * one of these (`command` set); `QmpClient.closed` reports one (no `command`)
 * when qemu hung up unexpectedly. `cause` says why, when we know.
 */
export class QmpDisconnected extends QmpError {
  constructor(
    readonly command: string | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** qemu did not answer `command` within `timeoutMs`. The connection stays up. */
export class QmpTimeout extends QmpError {
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP ${command}: no reply within ${timeoutMs} ms`);
  }
}

/** qemu answered `command` with an error (`errorClass` is qemu's `class`, e.g. CommandNotFound). */
export class QmpExecuteError extends QmpError {
  constructor(
    readonly command: string,
    readonly args: Readonly<Record<string, unknown>> | undefined,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
  }
}

/** Longest excerpt of an offending line kept on a QmpProtocolError (lines can be megabytes). */
const LINE_EXCERPT_CHARS = 200;

/**
 * qemu sent something that is not valid JSON or not a valid QMP message. We cannot
 * know which reply it was meant to be, so the connection is treated as broken.
 */
export class QmpProtocolError extends QmpError {
  /** The start of the offending line, if there was one. */
  readonly line: string | undefined;

  constructor(message: string, line?: string) {
    super(message);
    this.line = line === undefined ? undefined : line.slice(0, LINE_EXCERPT_CHARS);
  }
}
