// The peer tokens, read from files rather than the command line, where every
// local user could read them in /proc/PID/cmdline. A token file must be as
// private as a key: no access for group or others, owned by root or by the
// daemon's own user; anything looser stops the daemon at start, naming the file.
// Several files may be given during a rotation: each token is accepted, the
// first is the one this daemon sends. With none given, systemd's LoadCredential=
// (`$CREDENTIALS_DIRECTORY/peer-token`) is read; an empty one counts as none.
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

export const CREDENTIAL_NAME = "peer-token";
const MIN_LENGTH = 16;

/** A token file that is missing, too open, owned by someone else, or holds no usable token. */
export class TokenFileRefused extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(message);
    this.name = "TokenFileRefused";
  }
}

/** Files first (in order), then a token given in clear; the credential only when neither is given. */
export function readPeerTokens(files: readonly string[], inline: string | undefined, credentialsDir: string | undefined): string[] {
  const setting = "--peer-token-file (VMHOSTD_PEER_TOKEN_FILE)";
  const tokens = files.map((f) => readTokenFile(f, setting));
  if (inline) tokens.push(inline);
  if (tokens.length === 0 && credentialsDir) {
    const credential = path.join(credentialsDir, CREDENTIAL_NAME);
    const present = (() => {
      try {
        return statSync(credential).size > 0;
      } catch {
        return false;
      }
    })();
    if (present) tokens.push(readTokenFile(credential, "$CREDENTIALS_DIRECTORY/peer-token (LoadCredential=)"));
  }
  if (new Set(tokens).size !== tokens.length) throw new TokenFileRefused(setting, "the same token is given twice");
  return tokens;
}

/** One token: the file's content up to its final newline. Checked through the open descriptor, so the file read is the file checked. */
export function readTokenFile(file: string, setting: string, uid = process.getuid?.() ?? 0): string {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOCTTY);
  } catch (err) {
    throw new TokenFileRefused(setting, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new TokenFileRefused(setting, `${file} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new TokenFileRefused(setting, `${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}: must be 0600 or stricter (no access for group or others)`);
    }
    if (st.uid !== 0 && st.uid !== uid) throw new TokenFileRefused(setting, `${file} is owned by uid ${st.uid}: must be root's or the daemon's (uid ${uid})`);
    const token = readFileSync(fd, "utf8").replace(/\r?\n$/, "");
    if (token.length < MIN_LENGTH) throw new TokenFileRefused(setting, `${file}: a token must be at least ${MIN_LENGTH} characters`);
    if (/\s/.test(token)) throw new TokenFileRefused(setting, `${file}: a token is one line without spaces`);
    return token;
  } finally {
    closeSync(fd);
  }
}
