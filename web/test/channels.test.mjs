// Tests of WsPlusChannels (the wsplus.v1 client) with a fake WebSocket that
// the test drives as the server. Run: node --test web/test/
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { WsPlusChannels } from '../wsplus.js';
import { FakeWebSocket, last, sockets, waitFor } from './fake-websocket.mjs';

const now = () => Math.floor(Date.now() / 1000);

function connected(ws, expiresAt = now() + 3600) {
  ws.open();
  ws.push({ push: 'connected', protocol: 'wsplus.v1', session: { id: 's', tenantId: 't', subject: 'u' }, expires_at: expiresAt });
}

function makeClient(opts = {}) {
  let n = 0;
  const c = new WsPlusChannels({
    url: 'ws://broker.test/ws/channels', getToken: async () => `tok-${++n}`,
    minBackoffMs: 5, maxBackoffMs: 20, ...opts,
  });
  return { c, tokens: () => n };
}

beforeEach(() => FakeWebSocket.reset());

test('subscribes once connected, delivers publications, resolves publish', async () => {
  const { c } = makeClient();
  const got = [];
  const sub = c.subscribe('news', { onPublication: (data, pub) => got.push([data, pub._session.tenantId]) });
  await waitFor(() => sockets() === 1);
  connected(last());
  await waitFor(() => last().cmd('subscribe'));
  const s = last().cmd('subscribe');
  assert.equal(s.channel, 'news');
  // A batched frame: the reply and a publication.
  last().push({ id: s.id, result: { channel: 'news', publications: [] } },
    { push: 'pub', channel: 'news', data: { a: 1 }, _session: { tenantId: 't' } });
  await waitFor(() => got.length === 1);
  assert.deepEqual(got[0], [{ a: 1 }, 't']);
  assert.equal(sub.active, true);

  const p = c.publish('news', 5);
  const cmd = last().cmd('publish');
  assert.deepEqual({ channel: cmd.channel, data: cmd.data }, { channel: 'news', data: 5 });
  last().push({ id: cmd.id, result: {} });
  assert.deepEqual(await p, {});

  const bad = c.publish('x', 1);
  last().push({ id: last().cmd('publish').id, error: { code: 'forbidden', message: 'no' } });
  await assert.rejects(bad, (e) => e.code === 'forbidden');

  const u = sub.unsubscribe();
  last().push({ id: last().cmd('unsubscribe').id, result: {} });
  await u;
  assert.equal(c.subscriptions.size, 0);
  c.close();
});

test('refreshes in-band on expiring and before expires_at, without reconnecting', async () => {
  const { c, tokens } = makeClient({ refreshMarginMs: 60_000 });
  const refreshed = [];
  c.addEventListener('refreshed', (e) => refreshed.push(e.expiresAt));
  await waitFor(() => sockets() === 1);
  // 1 s left: the refresh timer fires at once (half the remaining lifetime).
  connected(last(), now() + 1);
  await waitFor(() => last().cmd('refresh'));
  const r = last().cmd('refresh');
  assert.equal(r.token, 'tok-2');
  last().push({ id: r.id, result: { expires_at: now() + 3600 } });
  await waitFor(() => refreshed.length === 1);
  // The server's notice triggers one as well.
  last().push({ push: 'expiring', expires_at: now() + 10 });
  await waitFor(() => last().ops('refresh').length === 2);
  assert.equal(sockets(), 1);
  assert.equal(tokens(), 3);
  c.close();
});

test('resubscribes every channel after a reconnect and rejects pending commands', async () => {
  const { c } = makeClient();
  c.subscribe('a');
  c.subscribe('b');
  await waitFor(() => sockets() === 1);
  connected(last());
  await waitFor(() => last().ops('subscribe').length === 2);
  const ping = c.ping();
  last().serverClose(1006);
  await assert.rejects(ping, (e) => e.code === 'disconnected');
  await waitFor(() => sockets() === 2);
  connected(last());
  await waitFor(() => last().ops('subscribe').length === 2);
  assert.deepEqual(last().ops('subscribe').map((x) => x.channel).sort(), ['a', 'b']);
  // A server-ended subscription is forgotten and its handler told why.
  c.close();
});

test('a push unsubscribe ends the subscription with its reason', async () => {
  const { c } = makeClient();
  const reasons = [];
  c.subscribe('a', { onUnsubscribed: (r) => reasons.push(r) });
  await waitFor(() => sockets() === 1);
  connected(last());
  last().push({ push: 'unsubscribe', channel: 'a', reason: 'forbidden' });
  assert.deepEqual(reasons, ['forbidden']);
  assert.equal(c.subscriptions.size, 0);
  c.close();
});

/** Connects the newest socket and answers its subscribe for `channel` with `result`. */
async function subscribeReply(channel, result) {
  await waitFor(() => last().ops('subscribe').some((x) => x.channel === channel));
  const cmd = last().ops('subscribe').find((x) => x.channel === channel);
  last().push({ id: cmd.id, result: { channel, publications: [], ...result } });
  return cmd;
}

const pub = (channel, offset, data = offset) => ({ push: 'pub', channel, data, offset, _session: { tenantId: 't' } });

test('remembers {epoch, offset}, resubscribes with since and delivers recovered before held live ones, once each', async () => {
  const { c } = makeClient();
  const got = [];
  const events = [];
  c.addEventListener('recoveryfailed', (e) => events.push(e));
  const sub = c.subscribe('doc', { onPublication: (d, p) => got.push([d, p.offset]) });
  await waitFor(() => sockets() === 1);
  connected(last());
  const first = await subscribeReply('doc', { epoch: 'e1', offset: 4 });
  assert.equal(first.since, undefined, 'the first subscribe has no since');
  assert.deepEqual(sub.position, { epoch: 'e1', offset: 4 });
  last().push(pub('doc', 5), pub('doc', 6));
  assert.deepEqual(sub.position, { epoch: 'e1', offset: 6 });

  last().serverClose(1001);
  await waitFor(() => sockets() === 2);
  connected(last());
  await waitFor(() => last().cmd('subscribe'));
  const again = last().cmd('subscribe');
  assert.deepEqual(again.since, { epoch: 'e1', offset: 6 });
  // A live push that races the reply is held until the recovered ones are delivered;
  // the recovered list repeats 6 (already seen) and the push repeats 9.
  last().push(pub('doc', 9));
  last().push({ id: again.id, result: { channel: 'doc', recovered: true, epoch: 'e1', offset: 9,
    publications: [6, 7, 8, 9].map((o) => ({ offset: o, data: o, _session: {} })) } });
  await waitFor(() => sub.active);
  last().push(pub('doc', 10));
  await waitFor(() => got.length >= 6);
  assert.deepEqual(got.map(([d]) => d), [5, 6, 7, 8, 9, 10], 'each once, in order');
  assert.deepEqual(sub.position, { epoch: 'e1', offset: 10 });
  assert.equal(events.length, 0);
  c.close();
});

test('recovered: false raises onRecoveryFailed and the recoveryfailed event, then follows the new epoch', async () => {
  const failed = [];
  const { c } = makeClient({ onRecoveryFailed: (e) => failed.push(['event', e.channel, e.since, e.epoch]) });
  const got = [];
  const sub = c.subscribe('doc', {
    onPublication: (d) => got.push(d),
    onRecoveryFailed: (channel, info) => failed.push(['handler', channel, info.since, info.epoch]),
  });
  await waitFor(() => sockets() === 1);
  connected(last());
  await subscribeReply('doc', { epoch: 'e1', offset: 2 });
  last().serverClose(1006);
  await waitFor(() => sockets() === 2);
  connected(last());
  await subscribeReply('doc', { recovered: false, epoch: 'e2', offset: 0 });
  await waitFor(() => failed.length === 2);
  assert.deepEqual(failed, [
    ['handler', 'doc', { epoch: 'e1', offset: 2 }, 'e2'],
    ['event', 'doc', { epoch: 'e1', offset: 2 }, 'e2'],
  ]);
  assert.deepEqual(sub.position, { epoch: 'e2', offset: 0 });
  last().push(pub('doc', 1, 'new-1'));
  assert.deepEqual(got, ['new-1'], 'offset 1 of the new epoch is not taken for a repeat');
  c.close();
});

test('without history no since is sent; a first since can be given; a server-side subscribe sets the position', async () => {
  const { c } = makeClient();
  c.subscribe('plain');
  c.subscribe('saved', {}, { since: { epoch: 'e9', offset: 3 } });
  await waitFor(() => sockets() === 1);
  connected(last());
  await subscribeReply('plain', {});
  const saved = await subscribeReply('saved', { recovered: true, epoch: 'e9', offset: 3 });
  assert.deepEqual(saved.since, { epoch: 'e9', offset: 3 });
  await waitFor(() => c.subscriptions.get('saved').active);
  last().push({ push: 'subscribe', channel: 'admin', epoch: 'e5', offset: 7 });
  assert.equal(c.subscriptions.get('admin').active, true);
  last().serverClose(1006);
  await waitFor(() => sockets() === 2);
  connected(last());
  await waitFor(() => last().ops('subscribe').length === 3);
  const since = Object.fromEntries(last().ops('subscribe').map((x) => [x.channel, x.since ?? null]));
  assert.deepEqual(since, { plain: null, saved: { epoch: 'e9', offset: 3 }, admin: { epoch: 'e5', offset: 7 } });
  c.close();
});

test('presence, history and rpc send their commands and resolve with the result', async () => {
  const { c } = makeClient();
  await waitFor(() => sockets() === 1);
  connected(last());
  const p = c.presence('room');
  assert.deepEqual(last().cmd('presence').channel, 'room');
  last().push({ id: last().cmd('presence').id, result: { clients: [{ id: 'a', subject: 'u' }] } });
  assert.deepEqual(await p, { clients: [{ id: 'a', subject: 'u' }] });

  const h = c.history('room', { limit: 10, since: { epoch: 'e', offset: 2 }, bogus: 1 });
  const hc = last().cmd('history');
  assert.deepEqual({ ...hc, id: 0 }, { id: 0, op: 'history', channel: 'room', limit: 10, since: { epoch: 'e', offset: 2 } });
  last().push({ id: hc.id, result: { epoch: 'e', offset: 3, publications: [{ offset: 3, data: 'x' }] } });
  assert.equal((await h).offset, 3);
  const all = c.history('room');
  assert.deepEqual(Object.keys(last().cmd('history')).sort(), ['channel', 'id', 'op']);
  last().push({ id: last().cmd('history').id, error: { code: 'not_available', message: 'no history' } });
  await assert.rejects(all, (e) => e.code === 'not_available');

  const r = c.rpc('sum', [1, 2]);
  assert.deepEqual({ method: last().cmd('rpc').method, data: last().cmd('rpc').data }, { method: 'sum', data: [1, 2] });
  last().push({ id: last().cmd('rpc').id, result: 3 });
  assert.equal(await r, 3);
  c.close();
});

test('a list of URLs: every reconnect moves on to the next node, round robin', async () => {
  const { c } = makeClient({ url: ['ws://a.test/ws/channels', 'ws://b.test/ws/channels'] });
  const hosts = [];
  for (let i = 1; i <= 3; i++) {
    await waitFor(() => sockets() === i);
    hosts.push(new URL(last().url).host);
    connected(last());
    last().serverClose(i === 2 ? 1006 : 1001);
  }
  await waitFor(() => sockets() === 4);
  hosts.push(new URL(last().url).host);
  assert.deepEqual(hosts, ['a.test', 'b.test', 'a.test', 'b.test']);
  c.close();
  assert.throws(() => new WsPlusChannels({ url: [] }), /empty/);
});
