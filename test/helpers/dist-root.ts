// Where the build is: tests run from dist/test, the source tree is its parent.
// A module of its own so that unit tests can find files without the daemon helper.
import path from "node:path";
import { fileURLToPath } from "node:url";

/** dist/ of the build under test. */
export const distRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
