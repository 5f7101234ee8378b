// wsplus.js — dependency-free browser client for the wsplus broker.
// Served by the broker at /wsplus.js. No build step: `import { WsPlusClient } from '/wsplus.js'`.

/**
 * What each close code means and what {@link WsPlusClient} does about it.
 * `action` is one of:
 * - `'stop'`      — do not reconnect (the server refuses us, or we were kicked);
 * - `'reconnect'` — reconnect with the normal backoff;
 * - `'refresh'`   — fetch a fresh token and reconnect at once, backoff reset;
 * - `'slow'`      — reconnect with a longer backoff (rate limited, slow consumer).
 * Unknown codes get `'reconnect'`. A 1000 close we did not ask for also reconnects.
 * @type {Readonly<Record<number, {meaning: string, action: 'stop'|'reconnect'|'refresh'|'slow'}>>}
 */
export const CLOSE_CODES = Object.freeze({
  1000: { meaning: 'normal close', action: 'reconnect' },
  1001: { meaning: 'server shutting down', action: 'reconnect' },
  1002: { meaning: 'protocol error', action: 'stop' },
  1005: { meaning: 'closed without a status code', action: 'reconnect' },
  1006: { meaning: 'connection lost or handshake refused (401/403/404/429)', action: 'reconnect' },
  1007: { meaning: 'invalid frame data (text not valid UTF-8)', action: 'stop' },
  1008: { meaning: 'policy violation', action: 'stop' },
  1009: { meaning: 'message too big', action: 'stop' },
  1011: { meaning: 'server error', action: 'reconnect' },
  1012: { meaning: 'server restarting', action: 'reconnect' },
  1013: { meaning: 'try again later', action: 'slow' },
  4001: { meaning: 'token expired', action: 'refresh' },
  4002: { meaning: 'session timeout reached', action: 'reconnect' },
  4003: { meaning: 'disconnected by an administrator', action: 'stop' },
  4008: { meaning: 'rate limit exceeded', action: 'slow' },
  4009: { meaning: 'slow consumer', action: 'slow' },
});

/** Backoff attempt number and floor multiplier used after a 'slow' close. */
const SLOW_ATTEMPT = 4;
const SLOW_FLOOR = 8;

/**
 * Event dispatched by {@link WsPlusClient}; the fields present depend on the type:
 * - `message`: `data` (parsed object in message mode, else string/ArrayBuffer),
 *   `session` (the sender's verified `_session` or null), `raw` (the frame as received);
 * - `open`: `url` (without the token);
 * - `close`: `code`, `reason`, `meaning`, `action` (see CLOSE_CODES), `willReconnect`, `delayMs`,
 *   `wasClean`, `opened` (the handshake had completed), `byClient` (we called close());
 * - `state`: `state`, `previous`;
 * - `error`: `error` (e.g. getToken threw).
 */
export class WsPlusEvent extends Event {
  /** @param {string} type @param {object} fields */
  constructor(type, fields) {
    super(type);
    Object.assign(this, fields);
  }
}

/**
 * A reconnecting WebSocket client for wsplus.
 *
 * Events (also as `onX` options): `message`, `open`, `close`, `state`, `error`.
 * Connects on its own right after construction (listeners added in the same tick see
 * every event) unless `autoConnect: false`; {@link WsPlusClient#close} stops for good,
 * {@link WsPlusClient#connect} starts again.
 *
 * @example
 * const c = new WsPlusClient({ url: '/ws/events', mode: 'message',
 *   getToken: async () => (await (await fetch('/my/token')).json()).token,
 *   onMessage: (e) => console.log(e.session?.tenantId, e.data) });
 */
export class WsPlusClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string|(() => string|Promise<string>)} options.url ws(s):// or http(s):// URL, absolute
   *   or relative to the page; may be a function, called before each connect (after getToken).
   * @param {() => Promise<string|null>} [options.getToken] called before EVERY connect; its result
   *   goes in the `token` query parameter (omitted when null/empty).
   * @param {'message'|'payload'} [options.mode='message'] message: parse JSON and expose `_session`.
   * @param {number} [options.minBackoffMs=500] smallest reconnect delay (and backoff base).
   * @param {number} [options.maxBackoffMs=30000] largest reconnect delay.
   * @param {number} [options.stableMs=10000] a connection open this long resets the backoff.
   * @param {number} [options.maxRetries=Infinity] consecutive failed attempts before giving up.
   * @param {boolean} [options.autoConnect=true] connect in a microtask after construction.
   * @param {(e: WsPlusEvent) => void} [options.onMessage]
   * @param {(e: WsPlusEvent) => void} [options.onOpen]
   * @param {(e: WsPlusEvent) => void} [options.onClose]
   * @param {(e: WsPlusEvent) => void} [options.onStateChange]
   * @param {(e: WsPlusEvent) => void} [options.onError]
   * @param {() => number} [options.random=Math.random] jitter source (for tests).
   * @param {typeof WebSocket} [options.WebSocket] WebSocket class (default: globalThis.WebSocket).
   */
  constructor(options) {
    super();
    if (!options || !options.url) throw new TypeError('WsPlusClient: options.url is required');
    this._o = {
      mode: 'message', minBackoffMs: 500, maxBackoffMs: 30000, stableMs: 10000,
      maxRetries: Infinity, random: Math.random, getToken: async () => null, ...options,
    };
    if (this._o.mode !== 'message' && this._o.mode !== 'payload') {
      throw new TypeError("WsPlusClient: mode must be 'message' or 'payload'");
    }
    const on = { message: 'onMessage', open: 'onOpen', close: 'onClose', state: 'onStateChange', error: 'onError' };
    for (const [type, key] of Object.entries(on)) {
      if (typeof options[key] === 'function') this.addEventListener(type, options[key]);
    }
    this._state = 'stopped';
    this._ws = null;
    this._timer = null;
    this._stopped = true;
    this._attempt = 0;    // consecutive failures; drives the backoff
    this._openedAt = 0;
    this._last4001 = 0;   // time of the last quick 4001, to avoid a hot refresh loop
    this._gen = 0;        // bumped on every connect()/close(); stale async work checks it
    if (options.autoConnect !== false) queueMicrotask(() => { if (this._gen === 0) this.connect(); });
  }

  /** @returns {'connecting'|'open'|'closed'|'stopped'} current state ('closed' = waiting to reconnect). */
  get state() { return this._state; }

  /** Start (or restart after close() or a stop) connecting. No-op while running. @returns {this} */
  connect() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._attempt = 0;
    this._gen++;
    this._dial(this._gen);
    return this;
  }

  /**
   * Send a message: an object is JSON-encoded; a string, ArrayBuffer, typed array or Blob goes as is.
   * @param {object|string|ArrayBuffer|ArrayBufferView|Blob} data
   * @returns {boolean} true if handed to the socket, false when not open (nothing is queued).
   */
  send(data) {
    const ws = this._ws;
    if (!ws || this._state !== 'open' || ws.readyState !== 1) return false;
    const isBinary = data instanceof ArrayBuffer || ArrayBuffer.isView(data) ||
      (typeof Blob !== 'undefined' && data instanceof Blob);
    ws.send(typeof data === 'string' || isBinary ? data : JSON.stringify(data));
    return true;
  }

  /** Close the connection and stop reconnecting. @param {number} [code=1000] @param {string} [reason] */
  close(code = 1000, reason = 'client closed') {
    this._stopped = true;
    this._gen++;
    clearTimeout(this._timer);
    this._timer = null;
    const ws = this._ws, opened = this._state === 'open';
    this._ws = null;
    this._setState('stopped');
    if (!ws || ws.readyState >= 2) return;
    ws.onmessage = null;
    ws.onclose = (ev) => this._emit('close', { ...closeFields(ev, 'stop', null, opened), byClient: true });
    try { ws.close(code, reason); } catch { ws.close(); }
  }

  /**
   * Delay before reconnect attempt `attempt` (0-based): full jitter, uniform in
   * [floor, min(maxBackoffMs, minBackoffMs * 2^(attempt+1))].
   * @param {number} attempt @param {number} [floor=minBackoffMs] @returns {number} milliseconds
   */
  backoff(attempt, floor = this._o.minBackoffMs) {
    const { minBackoffMs: min, maxBackoffMs: max } = this._o;
    const cap = Math.min(max, min * 2 ** Math.min(attempt + 1, 30));
    const lo = Math.min(floor, cap);
    return Math.round(lo + this._o.random() * (cap - lo));
  }

  async _dial(gen) {
    this._setState('connecting');
    let url;
    try {
      const token = await this._o.getToken();
      const base = typeof this._o.url === 'function' ? await this._o.url() : this._o.url;
      if (gen !== this._gen) return;
      url = wsUrl(base, token);
    } catch (error) {
      if (gen !== this._gen) return;
      this._emit('error', { error });
      if (++this._attempt > this._o.maxRetries) this.close();
      else this._schedule(this.backoff(this._attempt - 1));
      return;
    }
    const WS = this._o.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      ws = new WS(url);
    } catch (error) { // e.g. SyntaxError on a bad URL: retrying will not help
      this._emit('error', { error });
      this.close();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (ws !== this._ws) return;
      opened = true;
      this._openedAt = Date.now();
      this._setState('open');
      this._emit('open', { url: redact(url) });
    };
    ws.onmessage = (ev) => { if (ws === this._ws) this._deliver(ev.data); };
    ws.onerror = () => {}; // always followed by close, which carries the details
    ws.onclose = (ev) => { if (ws === this._ws) this._closed(ev, opened); };
  }

  _deliver(raw) {
    let data = raw, session = null;
    if (this._o.mode === 'message' && typeof raw === 'string') {
      try {
        const obj = JSON.parse(raw);
        if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
          data = obj;
          session = obj._session && typeof obj._session === 'object' ? obj._session : null;
        }
      } catch { /* not JSON: deliver the text as is */ }
    }
    this._emit('message', { data, session, raw });
  }

  _closed(ev, opened) {
    this._ws = null;
    const entry = CLOSE_CODES[ev.code || 1006] || { action: 'reconnect' };
    const lived = opened ? Date.now() - this._openedAt : 0;
    let delayMs = null;
    if (opened && lived >= this._o.stableMs) this._attempt = 0;
    if (entry.action === 'refresh') {
      // At once, unless tokens keep expiring right after connecting (avoid a hot loop).
      const quick = lived < 1000 && Date.now() - this._last4001 < 5000;
      this._last4001 = lived < 1000 ? Date.now() : 0;
      if (quick) delayMs = this.backoff(this._attempt++);
      else { this._attempt = 0; delayMs = 0; }
    } else if (entry.action === 'slow') {
      this._attempt = Math.max(this._attempt, SLOW_ATTEMPT);
      delayMs = this.backoff(this._attempt++, this._o.minBackoffMs * SLOW_FLOOR);
    } else if (entry.action === 'reconnect') {
      delayMs = this.backoff(this._attempt++);
    }
    if (this._attempt > this._o.maxRetries) delayMs = null;
    if (delayMs !== null) {
      this._schedule(delayMs);
    } else {
      this._stopped = true;
      this._setState('stopped');
    }
    // After scheduling, so that a close() from a listener cancels the reconnect.
    this._emit('close', closeFields(ev, delayMs === null ? 'stop' : entry.action, delayMs, opened));
  }

  _schedule(delayMs) {
    const gen = this._gen;
    this._setState('closed');
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      this._timer = null;
      if (gen === this._gen && !this._stopped) this._dial(gen);
    }, delayMs);
  }

  _setState(state) {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    this._emit('state', { state, previous });
  }

  _emit(type, fields) { this.dispatchEvent(new WsPlusEvent(type, fields)); }
}

/** The fields of a `close` event. */
function closeFields(ev, action, delayMs, opened) {
  const code = ev.code || 1006;
  const meaning = code === 1006 && !opened ? 'handshake refused or server unreachable (401/403/404/429)'
    : code === 1006 ? 'connection lost'
    : (CLOSE_CODES[code] || { meaning: `unknown close code ${code}` }).meaning;
  return { code, reason: ev.reason || '', meaning, action, willReconnect: delayMs !== null,
    delayMs, wasClean: !!ev.wasClean, opened: !!opened, byClient: false };
}

/** Build the socket URL: http(s) -> ws(s), existing query kept, `token` set. */
function wsUrl(base, token) {
  const u = new URL(base, globalThis.location ? globalThis.location.href : undefined);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (token) u.searchParams.set('token', token);
  return u.toString();
}

/** The URL with its token parameter hidden, for events and logs. */
function redact(url) {
  const u = new URL(url);
  if (u.searchParams.has('token')) u.searchParams.set('token', '***');
  return u.toString();
}
