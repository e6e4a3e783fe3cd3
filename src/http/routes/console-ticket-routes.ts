// Minting console tickets: a control panel (holding the peer token, or on the
// Unix socket) asks for one and hands only the URL to its customer's browser.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { CONSOLE_TICKET_TTL, consoleKinds, type ConsoleTicketStore } from "../../vm/console/console-tickets.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { TooManyClients } from "../../errors.js";
import * as errors from "../route-errors.js";
import { json, named, problems } from "../response-schemas.js";
import { vmParams } from "../schemas.js";

export const consoleTicketRequest = z
  .object({
    kind: z.enum(consoleKinds).describe("vnc: the screen (noVNC); serial: the serial console (xterm.js)"),
    mode: z.enum(["ro", "rw"]).default("rw").describe("rw: keyboard, mouse and paste reach the VM; ro: watch only"),
    ttlSec: z
      .number()
      .int()
      .min(1)
      .max(CONSOLE_TICKET_TTL.maxSec)
      .default(CONSOLE_TICKET_TTL.defaultSec)
      .describe("seconds the ticket may be used to open its one session; the session then lasts until closed or the VM stops"),
  })
  .strict();

const consoleTicketSchema = named(
  z.object({
    ticket: z.string().describe("the secret: 256 random bits, URL-safe base64; never logged"),
    url: z.string().describe("the console page for the browser: the only thing to hand to the customer"),
    expiresAt: z.string().describe("ISO 8601: after this the ticket opens nothing"),
    vm: z.string(),
    kind: z.enum(consoleKinds),
    mode: z.enum(["ro", "rw"]),
  }),
  "ConsoleTicket",
);

export interface ConsoleTicketDeps {
  registry: VmRegistry;
  tickets: ConsoleTicketStore;
  /** Where browsers reach the TCP listener, e.g. http://host:8443; empty: the URL is a path. */
  consoleUrlBase: string;
}

export function registerConsoleTicketRoutes(app: FastifyInstance, deps: ConsoleTicketDeps): void {
  app.withTypeProvider<ZodTypeProvider>().post(
    "/v1/vms/:name/console-tickets",
    {
      schema: {
        operationId: "createConsoleTicket",
        summary: "a one-time ticket for the VM's screen or serial console, and the page's URL to hand to a browser",
        description:
          "Peer token or Unix socket only. The ticket opens one session of this VM, kind and mode, within ttlSec; " +
          "it lives in memory only (a daemon restart invalidates it). 429 when too many tickets are live.",
        params: vmParams,
        body: consoleTicketRequest,
        response: { 201: json("the ticket", consoleTicketSchema), ...problems(...errors.withBody, ...errors.onVm, TooManyClients) },
      },
    },
    async (req, reply) => {
      const vm = deps.registry.get(req.params.name);
      const { kind, mode, ttlSec } = req.body;
      const minted = deps.tickets.mint({ vm: vm.name, kind, mode }, ttlSec);
      return reply.status(201).header("cache-control", "no-store").send({
        ticket: minted.ticket,
        url: `${deps.consoleUrlBase}/console/${minted.ticket}`,
        expiresAt: minted.expiresAt.toISOString(),
        vm: vm.name,
        kind,
        mode,
      });
    },
  );
}
