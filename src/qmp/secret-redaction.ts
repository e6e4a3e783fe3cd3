// Secrets in QMP arguments never reach a log line or an event: a VNC password,
// a `secret` object's data, keystrokes sent to the guest (which may be someone's
// password typed at a login prompt). The value is replaced, the key is kept, so
// a reader still sees what was done.

export const REDACTED = "<redacted>";

/** Argument names whose values are secret, at any depth: password, new-secret, key-secret, keys, ... */
const secretKey = /password|passwd|secret|key/i;


/** A copy of `value` with every secret replaced by "<redacted>"; the input is not changed. */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v));
  if (!value || typeof value !== "object") return value;
  const obj = value as Record<string, unknown>;
  // object-add of a `secret` (or `secret_keyring`): its payload is in `data`, a name that says nothing.
  const secretObject = typeof obj["qom-type"] === "string" && /secret/i.test(obj["qom-type"]);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (secretKey.test(k) || (secretObject && k === "data")) out[k] = REDACTED;
    // `human-monitor-command` carries a whole command line; one that mentions a secret is hidden whole.
    else if (k === "command-line" && typeof v === "string" && secretKey.test(v)) out[k] = REDACTED;
    else out[k] = redactSecrets(v);
  }
  return out;
}

/** The arguments of one QMP command as they may be logged or published. */
export function redactArguments(args: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  return args === undefined ? undefined : (redactSecrets(args) as Record<string, unknown>);
}
