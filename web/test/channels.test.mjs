// Tests of WsPlusChannels (the wsplus.v1 client) with a fake WebSocket that
// the test drives as the server. Run: node --test web/test/
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { WsPlusChannels } from '../wsplus.js';

class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.instances.push(this);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code = 1005, reason = '') { this.readyState = 2; setTimeout(() => this._closed(code, reason), 0); }
  open() { this.readyState = 1; this.onopen?.({}); }
  deliver(...msgs) { this.onmessage?.({ data: msgs.map((m) => JSON.stringify(m)).join('\n') }); }
  serverClose(code) { this._closed(code, ''); }
  _closed(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: true });
  }
  /** The last command with `op`. */
  cmd(op) { return this.sent.filter((c) => c.op === op).at(-1); }
}
globalThis.WebSocket = FakeWebSocket;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(pred, ms = 2000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(2);
  }
}
const last = () => FakeWebSocket.instances.at(-1);
const now = () => Math.floor(Date.now() / 1000);

function connected(ws, expiresAt = now() + 3600) {
  ws.open();
  ws.deliver({ push: 'connected', protocol: 'wsplus.v1', session: { id: 's', tenantId: 't', subject: 'u' }, expires_at: expiresAt });
}

function makeClient(opts = {}) {
  let n = 0;
  const c = new WsPlusChannels({
    url: 'ws://broker.test/ws/channels', getToken: async () => `tok-${++n}`,
    minBackoffMs: 5, maxBackoffMs: 20, ...opts,
  });
  return { c, tokens: () => n };
}

beforeEach(() => { FakeWebSocket.instances = []; });

test('subscribes once connected, delivers publications, resolves publish', async () => {
  const { c } = makeClient();
  const got = [];
  const sub = c.subscribe('news', { onPublication: (data, pub) => got.push([data, pub._session.tenantId]) });
  await waitFor(() => FakeWebSocket.instances.length === 1);
  connected(last());
  await waitFor(() => last().cmd('subscribe'));
  const s = last().cmd('subscribe');
  assert.equal(s.channel, 'news');
  // A batched frame: the reply and a publication.
  last().deliver({ id: s.id, result: { channel: 'news', publications: [] } },
    { push: 'pub', channel: 'news', data: { a: 1 }, _session: { tenantId: 't' } });
  await waitFor(() => got.length === 1);
  assert.deepEqual(got[0], [{ a: 1 }, 't']);
  assert.equal(sub.active, true);

  const p = c.publish('news', 5);
  const cmd = last().cmd('publish');
  assert.deepEqual({ channel: cmd.channel, data: cmd.data }, { channel: 'news', data: 5 });
  last().deliver({ id: cmd.id, result: {} });
  assert.deepEqual(await p, {});

  const bad = c.publish('x', 1);
  last().deliver({ id: last().cmd('publish').id, error: { code: 'forbidden', message: 'no' } });
  await assert.rejects(bad, (e) => e.code === 'forbidden');

  const u = sub.unsubscribe();
  last().deliver({ id: last().cmd('unsubscribe').id, result: {} });
  await u;
  assert.equal(c.subscriptions.size, 0);
  c.close();
});

test('refreshes in-band on expiring and before expires_at, without reconnecting', async () => {
  const { c, tokens } = makeClient({ refreshMarginMs: 60_000 });
  const refreshed = [];
  c.addEventListener('refreshed', (e) => refreshed.push(e.expiresAt));
  await waitFor(() => FakeWebSocket.instances.length === 1);
  // 1 s left: the refresh timer fires at once (half the remaining lifetime).
  connected(last(), now() + 1);
  await waitFor(() => last().cmd('refresh'));
  const r = last().cmd('refresh');
  assert.equal(r.token, 'tok-2');
  last().deliver({ id: r.id, result: { expires_at: now() + 3600 } });
  await waitFor(() => refreshed.length === 1);
  // The server's notice triggers one as well.
  last().deliver({ push: 'expiring', expires_at: now() + 10 });
  await waitFor(() => last().sent.filter((x) => x.op === 'refresh').length === 2);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(tokens(), 3);
  c.close();
});

test('resubscribes every channel after a reconnect and rejects pending commands', async () => {
  const { c } = makeClient();
  c.subscribe('a');
  c.subscribe('b');
  await waitFor(() => FakeWebSocket.instances.length === 1);
  connected(last());
  await waitFor(() => last().sent.filter((x) => x.op === 'subscribe').length === 2);
  const ping = c.ping();
  last().serverClose(1006);
  await assert.rejects(ping, (e) => e.code === 'disconnected');
  await waitFor(() => FakeWebSocket.instances.length === 2);
  connected(last());
  await waitFor(() => last().sent.filter((x) => x.op === 'subscribe').length === 2);
  assert.deepEqual(last().sent.map((x) => x.channel).sort(), ['a', 'b']);
  // A server-ended subscription is forgotten and its handler told why.
  c.close();
});

test('a push unsubscribe ends the subscription with its reason', async () => {
  const { c } = makeClient();
  const reasons = [];
  c.subscribe('a', { onUnsubscribed: (r) => reasons.push(r) });
  await waitFor(() => FakeWebSocket.instances.length === 1);
  connected(last());
  last().deliver({ push: 'unsubscribe', channel: 'a', reason: 'forbidden' });
  assert.deepEqual(reasons, ['forbidden']);
  assert.equal(c.subscriptions.size, 0);
  c.close();
});
