// The console page's HTML and the headers it is sent with. The page itself is
// static (web/console/, with noVNC and xterm.js vendored beside it at build
// time); what differs per session is written into data attributes, escaped, and
// read by the page's script, so the Content-Security-Policy can forbid every
// inline script.

export interface ConsolePageInfo {
  vm: string;
  state: string;
  kind: "vnc" | "serial";
  mode: "ro" | "rw";
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Scripts, styles, fonts and images from the daemon only; the WebSocket back to it;
 * nothing else. frame-ancestors lets the panel's origins embed the page, nobody
 * else. xterm.js sizes its rows with style elements it creates, hence styles (not
 * scripts) may be inline.
 */
export function consolePageHeaders(frameAncestors: readonly string[]): Record<string, string> {
  const csp = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    `frame-ancestors ${frameAncestors.length ? frameAncestors.join(" ") : "'none'"}`,
  ].join("; ");
  return {
    "content-security-policy": csp,
    // The ticket is in the page's URL: no Referer may carry it anywhere.
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  };
}

export function renderConsolePage(info: ConsolePageInfo): string {
  // Relative, so that a proxy may put the page under a prefix of its own.
  const a = "assets/";
  const title = `${info.kind === "vnc" ? "Screen" : "Serial console"} of ${info.vm}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="${a}xterm/xterm.css">
<link rel="stylesheet" href="${a}console-page.css">
<script type="module" src="${a}console-page.js"></script>
</head>
<body data-vm="${escapeHtml(info.vm)}" data-kind="${info.kind}" data-mode="${info.mode}" data-state="${escapeHtml(info.state)}">
<header id="bar">
  <span id="vm-name">${escapeHtml(info.vm)}</span>
  <span id="vm-state" class="state">${escapeHtml(info.state)}</span>
  <span id="session-mode">${info.mode === "ro" ? "view only" : ""}</span>
  <span id="status" role="status">connecting…</span>
  <span id="tools">
    <button id="ctrl-alt-del" type="button" hidden>Ctrl-Alt-Del</button>
    <input id="paste-text" type="text" placeholder="text to type" hidden>
    <button id="paste" type="button" hidden>Type text</button>
    <label id="scale-label" hidden><input id="scale" type="checkbox" checked> scale to window</label>
    <button id="fullscreen" type="button">Full screen</button>
  </span>
</header>
<main id="screen"></main>
</body>
</html>
`;
}

/** A ticket that opens nothing: said in words, with no script at all. */
export function renderTicketProblemPage(title: string, detail: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="assets/console-page.css"></head>
<body class="problem"><main><h1>${escapeHtml(title)}</h1><p id="problem">${escapeHtml(detail)}</p></main></body>
</html>
`;
}
