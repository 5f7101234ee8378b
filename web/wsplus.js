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
   * @param {string|string[]|(() => string|Promise<string>)} options.url ws(s):// or http(s):// URL,
   *   absolute or relative to the page; or a list of them (several nodes of a cluster: the first
   *   connect uses the first, and every reconnect moves on to the next, round robin, so a stopped
   *   node is left at once); or a function, called before each connect (after getToken).
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
    if (Array.isArray(this._o.url) && this._o.url.length === 0) {
      throw new TypeError('WsPlusClient: options.url must not be an empty list');
    }
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
    this._urlIndex = 0;   // with a list of URLs: the one the next connect uses
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
      const base = await this._nextUrl();
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

  /** The URL of the next connect: the function's answer, or the list's current entry. */
  async _nextUrl() {
    const u = this._o.url;
    if (typeof u === 'function') return u();
    return Array.isArray(u) ? u[this._urlIndex % u.length] : u;
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
    if (Array.isArray(this._o.url)) this._urlIndex = (this._urlIndex + 1) % this._o.url.length;
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

/**
 * An error reply of the `wsplus.v1` protocol (or `disconnected` / `timeout`
 * for a command that got no reply).
 */
export class WsPlusError extends Error {
  /** @param {{code: string, message?: string, reason?: string}} e */
  constructor(e) {
    super(e.message || e.code);
    this.code = e.code;
    this.reason = e.reason;
  }
}

/**
 * A subscription returned by {@link WsPlusChannels#subscribe}.
 *
 * Handlers, all optional:
 * - `onPublication(data, pub)` — each publication once, in order: first those
 *   recovered after a reconnect, then live ones (`pub` is `{data, offset?, _session, channel?}`);
 * - `onSubscribed(result)` — after every subscribe reply (the first and each resubscribe);
 * - `onRecoveryFailed(channel, info)` — a resubscribe with `since` got `recovered: false`:
 *   publications were missed and cannot be replayed; reload the channel's state from the
 *   application. `info` is `{channel, since, epoch, offset}` (the new position);
 * - `onUnsubscribed(reason)` — the server ended the subscription (`forbidden`, `admin`);
 * - `onError(err)` — the subscribe was refused (a {@link WsPlusError}); the subscription is dropped.
 */
export class Subscription {
  constructor(client, channel, handlers, since) {
    this.client = client;
    this.channel = channel;
    this.handlers = handlers || {};
    /**
     * Last seen position in the channel's stream, `{epoch, offset}`, or null while
     * the listener keeps no history for it. Sent as `since` on every resubscribe.
     */
    this.position = since ? { epoch: since.epoch, offset: since.offset } : null;
    /** True between the server's subscribe reply and an unsubscribe or disconnect. */
    this.active = false;
    /** Live pushes that arrived while a subscribe was in flight; delivered after its reply. */
    this._held = null;
  }

  /** Ends the subscription. @returns {Promise<void>} */
  unsubscribe() { return this.client._unsubscribe(this); }

  /** A `pub` push: held while subscribing, else delivered. */
  _live(pub) {
    if (this._held) this._held.push(pub);
    else this._deliver(pub);
  }

  /** Delivers `pub` unless its offset shows it was already delivered; advances the position. */
  _deliver(pub) {
    if (pub.offset != null && this.position) {
      if (pub.offset <= this.position.offset) return;
      this.position = { epoch: this.position.epoch, offset: pub.offset };
    }
    this.handlers.onPublication?.(pub.data, pub);
  }
}

/**
 * A client of channels-mode listeners (the `wsplus.v1` protocol), built on
 * {@link WsPlusClient}'s reconnecting transport: subscriptions with handlers,
 * publish with a Promise, ping, presence, history and rpc, automatic in-band
 * token refresh through `getToken()` before `expires_at` (and on the server's
 * `expiring` push), and after a reconnect every channel subscribed again with
 * `since` = the last seen `{epoch, offset}` when the listener keeps history,
 * so missed publications are delivered once each, in order, before live ones —
 * or `recoveryfailed` says they cannot be.
 *
 * Events: everything {@link WsPlusClient} emits (`open`, `close`, `state`,
 * `error`), plus `connected` (`session`, `expiresAt`), `refreshed`
 * (`expiresAt`), `recoveryfailed` (`channel`, `since`, `epoch`, `offset`) and
 * `push` (any push, `data`).
 *
 * @example
 * const c = new WsPlusChannels({ url: '/ws/channels', getToken });
 * const sub = c.subscribe('news', { onPublication: (data, pub) => show(data, pub._session) });
 * await c.publish('news', { text: 'hi' });
 */
export class WsPlusChannels extends EventTarget {
  /**
   * @param {object} options all of {@link WsPlusClient}'s (url or a list of URLs, getToken,
   *   backoff...), plus:
   * @param {number} [options.refreshMarginMs=30000] refresh this long before `expires_at`
   *   (at most half the remaining lifetime).
   * @param {number} [options.timeoutMs=10000] a command without reply after this long rejects.
   * @param {(e: WsPlusEvent) => void} [options.onRecoveryFailed] listener of `recoveryfailed`.
   */
  constructor(options) {
    super();
    this._o = { refreshMarginMs: 30000, timeoutMs: 10000, ...options };
    this._nextId = 0;
    this._pending = new Map();
    /** @type {Map<string, Subscription>} */
    this.subscriptions = new Map();
    this.session = null;
    this.expiresAt = null;
    this._refreshTimer = null;
    this._refreshing = null;
    if (typeof options.onRecoveryFailed === 'function') {
      this.addEventListener('recoveryfailed', options.onRecoveryFailed);
    }
    this.transport = new WsPlusClient({ ...options, mode: 'payload', onMessage: undefined });
    this.transport.addEventListener('message', (e) => this._frame(e.data));
    for (const t of ['open', 'state', 'error']) {
      this.transport.addEventListener(t, (e) => this._emit(t, e));
    }
    this.transport.addEventListener('close', (e) => {
      this._disconnected();
      this._emit('close', e);
    });
  }

  /** @returns {'connecting'|'open'|'closed'|'stopped'} */
  get state() { return this.transport.state; }

  /** Start again after close(). */
  connect() { this.transport.connect(); return this; }

  /** Close and stop reconnecting. */
  close(code, reason) {
    clearTimeout(this._refreshTimer);
    this.transport.close(code, reason);
    this._disconnected();
  }

  /**
   * Subscribes to `channel` (now, or as soon as connected; again after every reconnect,
   * with `since` = the last seen position). Subscribing to a channel twice returns the
   * existing subscription.
   * @param {string} channel
   * @param {{onPublication?: (data: any, pub: object) => void, onSubscribed?: (result: object) => void,
   *   onRecoveryFailed?: (channel: string, info: object) => void,
   *   onUnsubscribed?: (reason: string) => void, onError?: (err: WsPlusError) => void}} [handlers]
   * @param {{since?: {epoch: string, offset: number}}} [options] `since`: recover from this
   *   position already on the first subscribe (e.g. one saved by the page).
   * @returns {Subscription}
   */
  subscribe(channel, handlers, options = {}) {
    const existing = this.subscriptions.get(channel);
    if (existing) return existing;
    const sub = new Subscription(this, channel, handlers, options.since);
    this.subscriptions.set(channel, sub);
    if (this.session) this._sendSubscribe(sub);
    return sub;
  }

  /** Publishes `data` to `channel`. @returns {Promise<object>} the result (`{offset?}`). */
  publish(channel, data) { return this.call('publish', { channel, data }); }

  /** Round trip to the server. @returns {Promise<object>} */
  ping() { return this.call('ping', {}); }

  /**
   * Who is subscribed to `channel`, cluster-wide (listeners with `presence = true`).
   * @param {string} channel @returns {Promise<{clients: {id: string, subject: string|null}[]}>}
   */
  presence(channel) { return this.call('presence', { channel }); }

  /**
   * Kept publications of `channel` (listeners with history): the newest `limit` (all when
   * omitted; 0 = only the position), or those after `since` when its epoch is current.
   * @param {string} channel
   * @param {{limit?: number, since?: {epoch: string, offset: number}}} [opts]
   * @returns {Promise<{epoch: string, offset: number, publications: object[]}>}
   */
  history(channel, opts = {}) {
    const fields = { channel };
    if (opts.limit != null) fields.limit = opts.limit;
    if (opts.since != null) fields.since = opts.since;
    return this.call('history', fields);
  }

  /**
   * Calls the backend's RPC hook (listeners with hooks). @param {string} method
   * @param {any} data @returns {Promise<any>} the backend's result
   */
  rpc(method, data) { return this.call('rpc', { method, data }); }

  /**
   * Sends a command; resolves with its `result`, rejects with a {@link WsPlusError}.
   * @param {string} op @param {object} fields @returns {Promise<object>}
   */
  call(op, fields) {
    return new Promise((resolve, reject) => {
      const id = ++this._nextId;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new WsPlusError({ code: 'timeout', message: `${op}: no reply` }));
      }, this._o.timeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      if (!this.session || !this.transport.send(JSON.stringify({ id, op, ...fields }))) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new WsPlusError({ code: 'disconnected', message: `${op}: not connected` }));
      }
    });
  }

  /** Fetches a token with getToken() and refreshes in-band now. @returns {Promise<object>} */
  async refresh() {
    if (this._refreshing) return this._refreshing;
    this._refreshing = (async () => {
      try {
        const token = await this._o.getToken();
        const r = await this.call('refresh', { token });
        this._setExpiry(r.expires_at);
        this._emit('refreshed', { expiresAt: r.expires_at });
        return r;
      } finally {
        this._refreshing = null;
      }
    })();
    return this._refreshing;
  }

  _frame(text) {
    if (typeof text !== 'string') return;
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let m;
      try { m = JSON.parse(line); } catch { continue; }
      if (m && m.push) this._push(m);
      else if (m && m.id != null) this._reply(m);
    }
  }

  _reply(m) {
    const p = this._pending.get(m.id);
    if (!p) return;
    this._pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error) p.reject(new WsPlusError(m.error));
    else p.resolve(m.result);
  }

  _push(m) {
    this._emit('push', { data: m });
    const sub = m.channel != null ? this.subscriptions.get(m.channel) : null;
    switch (m.push) {
      case 'connected':
        this.session = m.session;
        this._setExpiry(m.expires_at);
        this._emit('connected', { session: m.session, expiresAt: m.expires_at });
        for (const s of this.subscriptions.values()) this._sendSubscribe(s);
        break;
      case 'pub':
        sub?._live(m);
        break;
      case 'subscribe': { // server-side subscription
        const s = sub || new Subscription(this, m.channel, {});
        if (m.epoch != null && s.position?.epoch !== m.epoch) {
          s.position = { epoch: m.epoch, offset: m.offset ?? 0 };
        }
        s.active = true;
        this.subscriptions.set(m.channel, s);
        break;
      }
      case 'unsubscribe':
        if (sub) {
          sub.active = false;
          this.subscriptions.delete(m.channel);
          sub.handlers.onUnsubscribed?.(m.reason);
        }
        break;
      case 'expiring':
        this.refresh().catch((error) => this._emit('error', { error }));
        break;
      default:
        break;
    }
  }

  _sendSubscribe(sub) {
    const fields = { channel: sub.channel };
    const since = sub.position;
    if (since) fields.since = since;
    sub._held = [];
    this.call('subscribe', fields).then((r) => {
      if (this.subscriptions.get(sub.channel) !== sub) return;
      this._subscribed(sub, since, r);
    }, (err) => {
      if (this.subscriptions.get(sub.channel) === sub) sub._held = null;
      if (err.code === 'disconnected' || err.code === 'timeout') return; // again on reconnect
      if (this.subscriptions.get(sub.channel) === sub) this.subscriptions.delete(sub.channel);
      sub.handlers.onError?.(err);
    });
  }

  /**
   * A subscribe reply: the new position, then (when recovery failed) the failure,
   * the recovered publications, the subscribed handler and the live pushes held
   * meanwhile — each publication once, by offset.
   */
  _subscribed(sub, since, r) {
    const held = sub._held || [];
    sub._held = null;
    sub.active = true;
    if (r.epoch == null) sub.position = null;
    else if (!since || r.recovered !== true) sub.position = { epoch: r.epoch, offset: r.offset };
    if (since && r.recovered === false) {
      const info = { channel: sub.channel, since, epoch: r.epoch ?? null, offset: r.offset ?? null };
      sub.handlers.onRecoveryFailed?.(sub.channel, info);
      this._emit('recoveryfailed', info);
    }
    for (const p of r.publications || []) sub._deliver(p);
    if (sub.position && r.offset != null && r.offset > sub.position.offset) {
      sub.position = { epoch: sub.position.epoch, offset: r.offset };
    }
    sub.handlers.onSubscribed?.(r);
    for (const p of held) sub._deliver(p);
  }

  async _unsubscribe(sub) {
    if (this.subscriptions.get(sub.channel) !== sub) return;
    this.subscriptions.delete(sub.channel);
    sub.active = false;
    sub._held = null;
    if (this.session) await this.call('unsubscribe', { channel: sub.channel });
  }

  _setExpiry(expiresAt) {
    this.expiresAt = expiresAt ?? null;
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (this.expiresAt == null) return;
    const left = this.expiresAt * 1000 - Date.now();
    const wait = Math.max(0, left - Math.min(this._o.refreshMarginMs, left / 2));
    this._refreshTimer = setTimeout(() => {
      this.refresh().catch((error) => this._emit('error', { error }));
    }, wait);
  }

  _disconnected() {
    this.session = null;
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    // Pushes held for a reply that will never come are dropped: the position was
    // not advanced by them, so the resubscribe's `since` recovers them.
    for (const s of this.subscriptions.values()) { s.active = false; s._held = null; }
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new WsPlusError({ code: 'disconnected', message: 'connection closed' }));
      this._pending.delete(id);
    }
  }

  _emit(type, fields) {
    // Own string-keyed fields only: a re-emitted Event carries internal state
    // (Node: symbol keys) and browsers make `isTrusted` an own read-only field.
    const copy = {};
    for (const k of Object.keys(fields || {})) {
      if (k !== 'type' && k !== 'isTrusted') copy[k] = fields[k];
    }
    this.dispatchEvent(new WsPlusEvent(type, copy));
  }
}
