// A digest of a directory tree (names, modes, sizes and contents), to show that
// a stream of refused requests left the daemon's state exactly as it was.
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import path from "node:path";

export async function stateDigest(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    const full = path.join(dir, rel);
    const st = await lstat(full);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out[rel || "."] = `dir ${mode}`;
      for (const name of (await readdir(full)).sort()) await walk(path.join(rel, name));
    } else if (st.isSymbolicLink()) {
      out[rel] = `link ${await readlink(full)}`;
    } else if (st.isFile()) {
      out[rel] = `file ${mode} ${st.size} ${createHash("sha256").update(await readFile(full)).digest("hex")}`;
    } else {
      out[rel] = `other ${mode}`;
    }
  }
  await walk("");
  return out;
}
