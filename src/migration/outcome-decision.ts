// What the source does with its paused copy once RAM has fully left, given what
// the destination answers and (fleet mode) who holds the owner key in etcd. The
// one rule: the copy here runs again only on a definite `aborted` with the key
// still this host's; anything less certain keeps it paused.

/** The destination's answer: its record's outcome, or `unknown` (unreachable, restarting, no record). */
export type DestinationAnswer = "prepared" | "committed" | "aborted" | "unknown";

/** Who holds the VM's owner key: this host, another, nobody could tell (etcd unreachable); or no fleet. */
export type OwnerCheck = "ours" | "elsewhere" | "unreachable" | "not-fleet";

export type OutcomeStep =
  /** The guest runs there: end qemu here and remove the VM. */
  | "remove-here"
  /** Nothing runs there nor will: the guest continues here. */
  | "resume-here"
  /** The destination still waits for the commit (it never arrived): send it again. */
  | "commit-again"
  /** A definite `aborted`: who holds the key decides, so look first. */
  | "check-owner"
  /** Not known: the guest stays paused here; ask again later (or an operator decides). */
  | "wait";

export function decideOutcome(answer: DestinationAnswer, owner?: OwnerCheck): OutcomeStep {
  switch (answer) {
    case "committed":
      return "remove-here";
    case "prepared":
      return "commit-again";
    case "unknown":
      return "wait";
    case "aborted":
      if (owner === undefined) return "check-owner";
      // The key elsewhere contradicts the answer (a takeover, a restore): only an operator knows.
      return owner === "ours" || owner === "not-fleet" ? "resume-here" : "wait";
  }
}

/** What an operator's explicit outcome leads to; a refusal says why. */
export type OperatorStep = { step: "remove-here" | "resume-here" } | { step: "refuse"; why: "owned-elsewhere" | "etcd-unreachable" };

export function decideOperatorOutcome(outcome: "committed" | "aborted", owner: OwnerCheck): OperatorStep {
  if (outcome === "committed") return { step: "remove-here" };
  if (owner === "ours" || owner === "not-fleet") return { step: "resume-here" };
  return { step: "refuse", why: owner === "elsewhere" ? "owned-elsewhere" : "etcd-unreachable" };
}
