// Where a console ticket stands in for the peer token, and nowhere else: the page
// and the WebSocket of one console session, plus the page's static files (public
// code, no secret). Every other route on the TCP listener still wants the token,
// and no route reads a ticket from anywhere but these two paths.
import { ConsoleOriginRefused } from "../errors.js";

export const CONSOLE_PAGE_ROUTE = "/console/:ticket";
export const CONSOLE_SOCKET_ROUTE = "/console/:ticket/ws";
export const CONSOLE_ASSETS_PREFIX = "/console/assets/";

/** Whether a route (by its pattern, as fastify matched it) is reached with a console ticket instead of the peer token. */
export function takesConsoleTicket(routePattern: string | undefined): boolean {
  if (routePattern === undefined) return false;
  return routePattern === CONSOLE_PAGE_ROUTE || routePattern === CONSOLE_SOCKET_ROUTE || routePattern.startsWith(CONSOLE_ASSETS_PREFIX);
}

/**
 * The request line as it may be logged: a ticket is a credential, so it never
 * reaches a log, neither in its own path nor wherever a client put one (a query,
 * another route). Anything shaped like a ticket goes, even the odd VM name.
 */
export function redactConsoleTicket(url: string): string {
  return url
    .replace(/^\/console\/(?!assets\/)[^/?#]+/, "/console/<ticket>")
    .replace(/(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g, "<ticket?>");
}

/** An Origin as browsers send it: scheme://host[:port], lower case. */
function normalOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, "");
}

/**
 * A browser always sends Origin with a WebSocket: it must be the console page's
 * own (the daemon's address as the browser reached it) or a configured one (a
 * panel that embeds or proxies the page). A client without Origin is not a
 * browser, so nothing a third-party page does reaches here without one.
 */
export function checkConsoleOrigin(origin: string | undefined, host: string | undefined, allowed: readonly string[]): void {
  if (origin === undefined) return;
  const got = normalOrigin(origin);
  const own = host ? [`http://${host}`, `https://${host}`].map(normalOrigin) : [];
  if (own.includes(got) || allowed.some((a) => normalOrigin(a) === got)) return;
  throw new ConsoleOriginRefused(origin);
}
