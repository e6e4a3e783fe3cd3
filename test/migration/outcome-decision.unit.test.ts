// The source's decision table once RAM has left: the destination's answer × who
// holds the owner key → remove the copy here, resume it, commit again, or wait.
// The one rule it encodes: the copy here runs again only on a definite
// `aborted` with the key still this host's (or no fleet).
import t from "tap";
import { decideOperatorOutcome, decideOutcome, type DestinationAnswer, type OwnerCheck } from "../../src/migration/outcome-decision.js";

const answers: DestinationAnswer[] = ["prepared", "committed", "aborted", "unknown"];
const owners: OwnerCheck[] = ["ours", "elsewhere", "unreachable", "not-fleet"];

t.test("the whole table", async (t) => {
  const table: Record<DestinationAnswer, Record<OwnerCheck, string>> = {
    committed: { ours: "remove-here", elsewhere: "remove-here", unreachable: "remove-here", "not-fleet": "remove-here" },
    prepared: { ours: "commit-again", elsewhere: "commit-again", unreachable: "commit-again", "not-fleet": "commit-again" },
    unknown: { ours: "wait", elsewhere: "wait", unreachable: "wait", "not-fleet": "wait" },
    aborted: { ours: "resume-here", elsewhere: "wait", unreachable: "wait", "not-fleet": "resume-here" },
  };
  for (const a of answers) for (const o of owners) t.equal(decideOutcome(a, o), table[a][o], `${a} × ${o}`);
});

t.test("an aborted answer is never acted on without looking at the key", async (t) => {
  t.equal(decideOutcome("aborted"), "check-owner");
  for (const a of answers.filter((x) => x !== "aborted")) t.not(decideOutcome(a), "check-owner", a);
});

t.test("nothing but a definite aborted with the key ours resumes here", async (t) => {
  for (const a of answers)
    for (const o of owners) {
      const resumes = decideOutcome(a, o) === "resume-here";
      t.equal(resumes, a === "aborted" && (o === "ours" || o === "not-fleet"), `${a} × ${o}`);
    }
});

t.test("the operator's explicit outcome", async (t) => {
  for (const o of owners) t.same(decideOperatorOutcome("committed", o), { step: "remove-here" }, `committed × ${o}`);
  t.same(decideOperatorOutcome("aborted", "ours"), { step: "resume-here" });
  t.same(decideOperatorOutcome("aborted", "not-fleet"), { step: "resume-here" });
  t.same(decideOperatorOutcome("aborted", "elsewhere"), { step: "refuse", why: "owned-elsewhere" }, "the key moved: the operator cannot resume here");
  t.same(decideOperatorOutcome("aborted", "unreachable"), { step: "refuse", why: "etcd-unreachable" }, "unchecked: refused, not guessed");
});
