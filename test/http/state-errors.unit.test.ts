// A state write that fails is told by its cause: a full disk (the operator frees
// space) is not a failing or read-only one (the operator replaces or remounts it).
import t from "tap";
import { asVmhError } from "../../src/http/problem.js";

const fsError = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: write /var/lib/vmhostd/x`), { code });

t.test("errno to problem", async (t) => {
  for (const code of ["ENOSPC", "EDQUOT"]) {
    t.match(asVmhError(fsError(code)), { code: "VMH_ERR_STATE_DISK_FULL", status: 507, fields: { errno: code } }, `${code} is a full state disk`);
  }
  for (const code of ["EROFS", "EIO"]) {
    t.match(asVmhError(fsError(code)), { code: "VMH_ERR_STATE_WRITE", status: 507, fields: { errno: code } }, `${code} is a failed write`);
  }
  t.match(asVmhError(fsError("EACCES")), { code: "VMH_ERR_INTERNAL" }, "anything else stays internal");
});
