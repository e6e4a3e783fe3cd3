// The console page's script: opens the ticket's WebSocket once and hands it to
// noVNC (the screen) or xterm.js (the serial console). What the session is (VM,
// kind, mode) comes from the page's data attributes; the ticket from its URL.
import RFB from "./novnc/core/rfb.js";
import { Terminal } from "./xterm/xterm.mjs";

const { vm, kind, mode } = document.body.dataset;
const screen = document.getElementById("screen");
const status = document.getElementById("status");
const stateText = document.getElementById("vm-state");

/** The WebSocket beside the page: <page URL>/ws, whatever prefix a proxy puts before /console/. */
function socketUrl() {
  const url = new URL(location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = url.pathname.replace(/\/+$/, "") + "/ws";
  url.search = "";
  url.hash = "";
  return url.href;
}

function say(text, tone) {
  status.textContent = text;
  status.className = tone ?? "";
  document.body.dataset.session = tone ?? "open";
}

/** Words for how the session ended, from the WebSocket's close code (vmhostd's 4000-4999 and the standard ones). */
function ended(event, opened) {
  if (!opened) {
    say("Could not open the console: this link was already used, has expired, or may not be opened from here. Ask the control panel for a new link.", "refused");
    return;
  }
  if (event.code === 4000) {
    stateText.textContent = "stopped";
    say("The VM stopped: this console session has ended.", "ended");
  } else if (event.code === 1001) {
    say("The host's daemon is restarting: this console session has ended. Ask the control panel for a new link.", "ended");
  } else {
    say(`This console session has ended${event.reason ? `: ${event.reason}` : "."}`, "ended");
  }
}

function openSocket() {
  const socket = new WebSocket(socketUrl());
  socket.binaryType = "arraybuffer";
  let opened = false;
  socket.addEventListener("open", () => {
    opened = true;
    say(mode === "ro" ? "connected (view only)" : "connected", "open");
  });
  socket.addEventListener("close", (event) => ended(event, opened));
  return socket;
}

function show(id) {
  const el = document.getElementById(id);
  el.hidden = false;
  return el;
}

/** Types text as key presses: what "paste" means to a VM that has no clipboard agent. */
function typeText(rfb, text) {
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === "\n") rfb.sendKey(0xff0d, "Enter");
    else if (code >= 0x20 && code <= 0xff) rfb.sendKey(code);
    else if (code > 0xff) rfb.sendKey(0x01000000 + code);
  }
}

function startScreen() {
  const socket = openSocket();
  const rfb = new RFB(screen, socket, { shared: true });
  rfb.viewOnly = mode === "ro";
  rfb.scaleViewport = true;
  rfb.background = "#000";
  const scale = show("scale-label").querySelector("input");
  scale.addEventListener("change", () => (rfb.scaleViewport = scale.checked));
  if (mode === "rw") {
    show("ctrl-alt-del").addEventListener("click", () => rfb.sendCtrlAltDel());
    const text = show("paste-text");
    show("paste").addEventListener("click", () => {
      typeText(rfb, text.value);
      text.value = "";
      rfb.focus();
    });
  }
  window.vmhConsole = { kind, rfb, socket };
}

function startSerial() {
  const socket = openSocket();
  const term = new Terminal({ cursorBlink: mode === "rw", disableStdin: mode === "ro", scrollback: 5000 });
  term.open(screen);
  socket.addEventListener("message", (event) => term.write(new Uint8Array(event.data)));
  const encoder = new TextEncoder();
  term.onData((data) => {
    if (mode === "rw" && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  term.focus();
  window.vmhConsole = { kind, term, socket };
}

document.getElementById("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) void document.exitFullscreen();
  else void document.documentElement.requestFullscreen();
});
document.title = `${kind === "vnc" ? "Screen" : "Serial console"} of ${vm}`;
if (kind === "vnc") startScreen();
else startSerial();
