// Smoke tests for web/wsplus.js with a fake WebSocket. Run: node --test web/test/
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { WsPlusClient, CLOSE_CODES } from '../wsplus.js';
import { FakeWebSocket, last, sleep, sockets, waitFor } from './fake-websocket.mjs';

/** A client with a counting token source; events are recorded. */
function makeClient(opts = {}) {
  let n = 0;
  const events = [];
  const client = new WsPlusClient({
    url: 'ws://broker.test/ws/events?room=x',
    getToken: async () => `tok-${++n}`,
    minBackoffMs: 5,
    maxBackoffMs: 80,
    ...opts,
  });
  for (const t of ['open', 'close', 'message', 'state', 'error']) {
    client.addEventListener(t, (e) => events.push(e));
  }
  return { client, events, tokens: () => n, closes: () => events.filter((e) => e.type === 'close') };
}

beforeEach(() => FakeWebSocket.reset());

test('fetches a fresh token before every connect and keeps query params', async () => {
  const { client, tokens } = makeClient();
  await waitFor(() => sockets() === 1);
  assert.equal(tokens(), 1);
  const u = new URL(last().url);
  assert.equal(u.searchParams.get('room'), 'x');
  assert.equal(u.searchParams.get('token'), 'tok-1');
  assert.equal(last().binaryType, 'arraybuffer');
  last().open();
  assert.equal(client.state, 'open');
  last().serverClose(1001, 'shutdown');
  await waitFor(() => sockets() === 2);
  assert.equal(tokens(), 2);
  assert.equal(new URL(last().url).searchParams.get('token'), 'tok-2');
  client.close();
});

test('http(s) URLs become ws(s) and an existing token param is replaced', async () => {
  const { client } = makeClient({ url: 'https://h.test/ws/events?token=old&a=1' });
  await waitFor(() => sockets() === 1);
  const u = new URL(last().url);
  assert.equal(u.protocol, 'wss:');
  assert.equal(u.searchParams.getAll('token').join(), 'tok-1');
  assert.equal(u.searchParams.get('a'), '1');
  client.close();
});

test('backoff grows exponentially, is jittered and stays within bounds', () => {
  const { client } = makeClient({ minBackoffMs: 500, maxBackoffMs: 30000, autoConnect: false });
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(30000, 500 * 2 ** (attempt + 1));
    const samples = Array.from({ length: 200 }, () => client.backoff(attempt));
    for (const d of samples) assert.ok(d >= 500 && d <= cap, `attempt ${attempt}: ${d} not in [500, ${cap}]`);
    if (cap > 1000) assert.ok(new Set(samples).size > 10, 'delays are jittered');
  }
});

test('handshake failures (1006 before open) back off with a growing cap', async () => {
  const { client, closes, tokens } = makeClient({ random: () => 1 });
  for (let i = 1; i <= 5; i++) {
    await waitFor(() => sockets() === i);
    last().serverClose(1006);
  }
  const delays = closes().map((e) => e.delayMs);
  assert.deepEqual(delays, [10, 20, 40, 80, 80]);
  assert.ok(closes().every((e) => e.willReconnect && !e.opened));
  assert.match(closes()[0].meaning, /handshake/);
  assert.equal(tokens(), 5);
  client.close();
});

test('a connection that stayed open resets the backoff', async () => {
  const { client, closes } = makeClient({ random: () => 1, stableMs: 20 });
  for (let i = 1; i <= 3; i++) {
    await waitFor(() => sockets() === i);
    last().serverClose(1006);
  }
  await waitFor(() => sockets() === 4);
  last().open();
  await sleep(30);
  last().serverClose(1006);
  assert.deepEqual(closes().map((e) => e.delayMs), [10, 20, 40, 10]);
  client.close();
});

test('4003 (kicked by an administrator) stops for good', async () => {
  const { client, closes } = makeClient();
  await waitFor(() => sockets() === 1);
  last().open();
  last().serverClose(4003, 'kicked');
  await sleep(50);
  assert.equal(sockets(), 1);
  assert.equal(client.state, 'stopped');
  const c = closes()[0];
  assert.equal(c.code, 4003);
  assert.equal(c.reason, 'kicked');
  assert.equal(c.meaning, CLOSE_CODES[4003].meaning);
  assert.equal(c.willReconnect, false);
});

test('every close code the broker sends has a meaning and the documented action', () => {
  // The close codes of docs/protocol.md#close-codes; docs/browser.md §4 has the
  // same table.
  const want = {
    1000: 'reconnect', 1001: 'reconnect', 1002: 'stop', 1007: 'stop', 1008: 'stop', 1009: 'stop',
    4001: 'refresh', 4002: 'reconnect', 4003: 'stop', 4008: 'slow', 4009: 'slow',
  };
  for (const [code, action] of Object.entries(want)) {
    assert.ok(CLOSE_CODES[code], `code ${code} missing`);
    assert.equal(CLOSE_CODES[code].action, action, `code ${code}`);
    assert.ok(CLOSE_CODES[code].meaning.length > 0);
  }
});

test('1002/1007/1008/1009 stop; 1000 from the server reconnects', async () => {
  for (const code of [1002, 1007, 1008, 1009]) {
    FakeWebSocket.reset();
    const { client, closes } = makeClient();
    await waitFor(() => sockets() === 1);
    last().open();
    last().serverClose(code);
    assert.equal(closes()[0].willReconnect, false, `code ${code}`);
    assert.equal(client.state, 'stopped');
  }
  FakeWebSocket.reset();
  const { client } = makeClient();
  await waitFor(() => sockets() === 1);
  last().open();
  last().serverClose(1000);
  await waitFor(() => sockets() === 2);
  client.close();
});

test('4001 (token expired) fetches a new token and reconnects at once', async () => {
  const { client, closes, tokens } = makeClient({ minBackoffMs: 1000, maxBackoffMs: 5000 });
  await waitFor(() => sockets() === 1);
  last().open();
  last().serverClose(4001, 'token expired');
  const c = closes()[0];
  assert.equal(c.willReconnect, true);
  assert.equal(c.delayMs, 0);
  assert.equal(c.action, 'refresh');
  assert.equal(c.meaning, 'token expired');
  await waitFor(() => sockets() === 2, 500); // well below minBackoffMs
  assert.equal(tokens(), 2);
  assert.equal(new URL(last().url).searchParams.get('token'), 'tok-2');
  last().open();
  assert.equal(client.state, 'open');
  client.close();
});

test('4008 and 4009 back off longer than a normal reconnect', async () => {
  const { client, closes } = makeClient({ minBackoffMs: 5, maxBackoffMs: 1000, random: () => 0 });
  await waitFor(() => sockets() === 1);
  last().open();
  last().serverClose(4008);
  await waitFor(() => sockets() === 2);
  last().open();
  last().serverClose(4009);
  const [a, b] = closes();
  assert.equal(a.action, 'slow');
  assert.ok(a.delayMs >= 40 && b.delayMs >= 40, `${a.delayMs}, ${b.delayMs}`);
  client.close();
});

test('message mode exposes the parsed object and the sender _session', async () => {
  const { client, events } = makeClient();
  await waitFor(() => sockets() === 1);
  last().open();
  const session = { type: 'websocket', id: 'c1', tenantId: 'acme', subject: 'alice',
    authStatus: 'verified', routingScope: 'tenant' };
  last().deliver(JSON.stringify({ text: 'hi', _session: session }));
  last().deliver('not json');
  const msgs = events.filter((e) => e.type === 'message');
  assert.deepEqual(msgs[0].data.text, 'hi');
  assert.deepEqual(msgs[0].session, session);
  assert.equal(msgs[1].data, 'not json');
  assert.equal(msgs[1].session, null);
  assert.equal(client.send({ text: 'yo' }), true);
  assert.equal(client.send('raw'), true);
  assert.deepEqual(last().sent, ['{"text":"yo"}', 'raw']);
  client.close();
  assert.equal(client.send('late'), false);
});

test('payload mode delivers text and binary untouched', async () => {
  const { client, events } = makeClient({ mode: 'payload' });
  await waitFor(() => sockets() === 1);
  last().open();
  const buf = new Uint8Array([1, 2, 3]).buffer;
  last().deliver('{"a":1}');
  last().deliver(buf);
  const msgs = events.filter((e) => e.type === 'message');
  assert.equal(msgs[0].data, '{"a":1}');
  assert.equal(msgs[1].data, buf);
  client.close();
});

test('close() stops reconnecting and reports the close', async () => {
  const { client, closes, events } = makeClient();
  await waitFor(() => sockets() === 1);
  last().open();
  client.close();
  assert.equal(client.state, 'stopped');
  await waitFor(() => closes().length === 1);
  assert.equal(closes()[0].willReconnect, false);
  await sleep(30);
  assert.equal(sockets(), 1);
  const states = events.filter((e) => e.type === 'state').map((e) => e.state);
  assert.deepEqual(states, ['connecting', 'open', 'stopped']);
  client.connect();
  await waitFor(() => sockets() === 2);
  client.close();
});

test('a failing getToken emits error and retries with backoff', async () => {
  let calls = 0;
  const { client, events } = makeClient({
    getToken: async () => { if (++calls < 3) throw new Error('no token'); return 't'; },
  });
  await waitFor(() => sockets() === 1);
  assert.equal(calls, 3);
  assert.equal(events.filter((e) => e.type === 'error').length, 2);
  client.close();
});

test('4001 right after every connect falls back to backoff (no hot loop)', async () => {
  const { client, closes } = makeClient({ random: () => 1 });
  for (let i = 1; i <= 3; i++) {
    await waitFor(() => sockets() === i);
    last().open();
    last().serverClose(4001);
  }
  assert.deepEqual(closes().map((e) => e.delayMs), [0, 10, 20]);
  client.close();
});
