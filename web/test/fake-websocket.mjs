// A stand-in for the browser WebSocket that the test drives as the server,
// shared by every test file in web/test (not itself a test: `node --test`
// only runs *.test.mjs). Importing it installs it as globalThis.WebSocket.

/** Minimal fake of the browser WebSocket; the test plays the server. */
export class FakeWebSocket {
  /** Every socket created since the last reset(), oldest first. */
  static instances = [];

  /** Forgets every socket (call in beforeEach). */
  static reset() { FakeWebSocket.instances = []; }

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** What the client sent, as given to send(). */
    this.sent = [];
    FakeWebSocket.instances.push(this);
  }

  send(data) { this.sent.push(data); }

  close(code = 1005, reason = '') {
    this.readyState = 2;
    setTimeout(() => this._closed(code, reason), 0);
  }

  // --- server side ---

  /** Completes the handshake. */
  open() { this.readyState = 1; this.onopen?.({}); }

  /** Delivers one frame as is (string or ArrayBuffer). */
  deliver(data) { this.onmessage?.({ data }); }

  /** Delivers `msgs` JSON-encoded in one frame, separated by `\n` (wsplus.v1 batching). */
  push(...msgs) { this.deliver(msgs.map((m) => JSON.stringify(m)).join('\n')); }

  /** The server closes (1006 counts as unclean). */
  serverClose(code, reason = '') { this._closed(code, reason); }

  _closed(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }

  // --- wsplus.v1 helpers ---

  /** Every command sent so far (text frames parsed as JSON). */
  commands() { return this.sent.filter((s) => typeof s === 'string').map((s) => JSON.parse(s)); }

  /** The commands with `op`, oldest first. */
  ops(op) { return this.commands().filter((c) => c.op === op); }

  /** The last command with `op`. */
  cmd(op) { return this.ops(op).at(-1); }
}
globalThis.WebSocket = FakeWebSocket;

/** The newest socket. */
export const last = () => FakeWebSocket.instances.at(-1);

/** How many sockets were created. */
export const sockets = () => FakeWebSocket.instances.length;

/** Resolves after `ms`. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` every 2 ms until true; rejects after `ms`. */
export async function waitFor(pred, ms = 2000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(2);
  }
}
