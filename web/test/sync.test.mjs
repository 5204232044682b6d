// web/test/sync.test.mjs: one connection's life (src/sync.ts) against a fake
// WebSocket, fake timers and a small in-memory store that records every
// call: hello, resend after reconnect, bounded batches and in-flight pushes,
// acks and refusals, snapshot and changes, hostile frames, half-open sockets,
// jittered backoff, unauthorized, online/offline and stop().
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Sync } from '../build/lib/sync.js';

const H = '0000018c2f3a4b5c';
const TABLES = { issues: { pk: 'id', group: 'team', columns: { id: 'text', team: 'text', title: 'text' } } };

/* ------------------------------------------------------------------ fakes */

/* Timers on a virtual clock: advance(ms) runs what falls due, in order. */
class FakeTimers {
  now = 0;
  next = 1;
  live = new Map(); /* id → {at, ms, fn} */
  log = [];         /* every setTimer call: {id, ms} */

  set = (fn, ms) => {
    const id = this.next++;
    this.live.set(id, { at: this.now + ms, ms, fn });
    this.log.push({ id, ms });
    return id;
  };

  clear = (id) => {
    this.live.delete(id);
  };

  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let best = null;
      for (const [id, t] of this.live) if (t.at <= end && (best === null || t.at < best[1].at)) best = [id, t];
      if (best === null) break;
      this.live.delete(best[0]);
      this.now = best[1].at;
      best[1].fn();
    }
    this.now = end;
  }

  get count() {
    return this.live.size;
  }

  /* The delays of the timers now waiting. */
  delays() {
    return [...this.live.values()].map((t) => t.ms);
  }
}

/* A WebSocket the test drives: open(), receive(), serverClose(), fail(). */
function fakeSocketClass() {
  const sockets = [];
  class FakeWS {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedByClient = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }
    send(data) {
      if (this.readyState === 0) throw new Error('InvalidStateError: still connecting');
      this.sent.push(data);
    }
    close(code) {
      this.closedByClient = code ?? 1005;
      this.readyState = 3;
    }
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(frame) {
      this.onmessage?.({ data: typeof frame === 'string' || frame instanceof ArrayBuffer ? frame : JSON.stringify(frame) });
    }
    serverClose(code = 1001, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: true });
    }
    fail() {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: '', wasClean: false });
    }
    frames() {
      return this.sent.map((s) => JSON.parse(s));
    }
    pushes() {
      return this.frames().filter((f) => f.type === 'push');
    }
  }
  return { FakeWS, sockets };
}

/* An outbox and a cursor in memory, each call recorded; fail.<method> makes it throw once. */
class FakeStore {
  clientId = 'client-1';
  cur = 0;
  clock = H;
  outbox = []; /* {seq, id, table, row, kind, fields, hlc, acked} */
  seq = 0;
  calls = [];
  fail = {};

  rec(name, arg) {
    this.calls.push([name, arg]);
    if (this.fail[name]) {
      const e = this.fail[name];
      delete this.fail[name];
      throw e;
    }
  }
  write(n, fields = { title: 't' }) {
    for (let i = 0; i < n; i++) {
      this.seq++;
      this.outbox.push({ seq: this.seq, id: `op-${this.seq}`, table: 'issues', row: `r${this.seq}`, kind: 'upsert', fields, hlc: H, acked: false });
    }
  }
  cursor() { this.rec('cursor'); return this.cur; }
  hlc() { this.rec('hlc'); return this.clock; }
  observe(h) { this.rec('observe', h); }
  ensureTables(t) { this.rec('ensureTables', t); }
  applyChanges(f) {
    this.rec('applyChanges', f);
    this.cur = f.cursor;
    const ids = new Set(f.changes.map((c) => c.op_id));
    this.outbox = this.outbox.filter((o) => !ids.has(o.id));
    return new Set(f.changes.map((c) => c.table));
  }
  ack(f) {
    this.rec('ack', f);
    for (const o of this.outbox) if (f.acked.includes(o.id)) o.acked = true;
    const rejected = [];
    const tables = new Set();
    for (const r of f.rejected) {
      const o = this.outbox.find((x) => x.id === r.id);
      if (!o) continue;
      this.outbox = this.outbox.filter((x) => x !== o);
      rejected.push({ id: o.id, table: o.table, row: o.row, code: r.code, message: r.message });
      tables.add(o.table);
    }
    return { rejected, tables };
  }
  snapshotBegin(groups) { this.rec('snapshotBegin', groups); }
  snapshotFrame(f) {
    this.rec('snapshotFrame', f);
    if (f.done) this.cur = f.cursor;
    return { done: f.done, tables: new Set(f.rows.map((r) => r.table)) };
  }
  /* limit is only recorded: sync must bound its pushes itself */
  limits = [];
  pending(after = 0, limit) {
    this.rec('pending', after);
    this.limits.push(limit);
    return this.outbox.filter((o) => !o.acked && o.seq > after).map(({ acked, ...op }) => op);
  }
  pendingCount() { return this.outbox.length; }
  /* the calls that touch data (not the reads hello makes) */
  writes() {
    return this.calls.filter(([n]) => !['cursor', 'hlc', 'pending'].includes(n));
  }
}

function setup(opts = {}) {
  const timers = new FakeTimers();
  const { FakeWS, sockets } = fakeSocketClass();
  const store = new FakeStore();
  const events = [];
  const sync = new Sync({
    url: 'ws://gw.test/sync', token: 'tok', groups: ['g1', 'g2'], store,
    WebSocket: FakeWS, setTimer: timers.set, clearTimer: timers.clear, random: () => 0.5,
    ...opts,
  }, (e) => events.push(e));
  const last = () => sockets[sockets.length - 1];
  /* a new socket, opened and welcomed */
  const connect = (welcome = {}) => {
    const ws = last();
    ws.open();
    ws.receive({ type: 'welcome', cursor: 0, hlc: H, groups: ['g1'], tables: TABLES, ...welcome });
    return ws;
  };
  const statuses = () => events.filter((e) => e.type === 'status');
  return { sync, store, timers, sockets, events, last, connect, statuses };
}

const ids = (push) => push.ops.map((o) => o.id);
const ackOf = (push, rejected = []) => ({
  type: 'ack',
  acked: push.ops.map((o) => o.id).filter((id) => !rejected.some((r) => r.id === id)),
  rejected, hlc: H,
});

/* ------------------------------------------------------------------ tests */

test('hello: subprotocol synclog.v1, the store\'s client_id, cursor and hlc; nothing pushed before welcome', () => {
  const t = setup();
  t.store.cur = 17;
  t.store.clock = '0000018c2f3a4b99';
  t.store.write(2);
  t.sync.start();
  assert.equal(t.sockets.length, 1);
  assert.equal(t.last().url, 'ws://gw.test/sync');
  assert.equal(t.last().protocols, 'synclog.v1');
  assert.equal(t.sync.connected, false);
  t.last().open();
  assert.deepEqual(t.last().frames(), [
    { type: 'hello', client_id: 'client-1', token: 'tok', groups: ['g1', 'g2'], cursor: 17, hlc: '0000018c2f3a4b99' },
  ]);
  assert.equal(t.sync.connected, false, 'open is not welcomed');
  t.sync.kick();
  assert.equal(t.last().sent.length, 1, 'no push before the welcome');
});

test('welcome: observe(hlc), ensureTables(tables), status connected, then the unacked ops', () => {
  const t = setup();
  t.store.write(3);
  t.sync.start();
  t.connect({ hlc: '0000018c2f3a4b60' });
  assert.deepEqual(t.store.writes().slice(0, 2), [['observe', '0000018c2f3a4b60'], ['ensureTables', TABLES]]);
  assert.equal(t.sync.connected, true);
  assert.deepEqual(t.statuses().at(-1), { type: 'status', connected: true, lastError: null });
  const pushes = t.last().pushes();
  assert.equal(pushes.length, 1);
  assert.deepEqual(pushes[0].ops[0], { id: 'op-1', table: 'issues', row: 'r1', kind: 'upsert', fields: { title: 't' }, hlc: H });
  assert.deepEqual(ids(pushes[0]), ['op-1', 'op-2', 'op-3']);
});

test('after a reconnect every unacked op is resent in outbox order with the same ids', () => {
  const t = setup();
  t.store.write(5);
  t.sync.start();
  const ws1 = t.connect();
  const p1 = ws1.pushes()[0];
  assert.deepEqual(ids(p1), ['op-1', 'op-2', 'op-3', 'op-4', 'op-5']);
  ws1.serverClose(1001, 'going away');
  assert.equal(t.sync.connected, false);
  assert.deepEqual(t.statuses().at(-1), {
    type: 'status', connected: false,
    lastError: { code: 'network', message: 'the server closed the connection (1001: going away)' },
  });
  t.timers.advance(250);
  assert.equal(t.sockets.length, 2);
  const ws2 = t.connect();
  assert.deepEqual(ids(ws2.pushes()[0]), ['op-1', 'op-2', 'op-3', 'op-4', 'op-5']);
  /* op-1 and op-2 acked there: the next connection resends only op-3..op-5 */
  ws2.receive({ type: 'ack', acked: ['op-1', 'op-2'], rejected: [], hlc: H });
  ws2.fail();
  t.timers.advance(1000);
  const ws3 = t.connect();
  assert.deepEqual(ids(ws3.pushes()[0]), ['op-3', 'op-4', 'op-5']);
});

test('pushes are bounded: maxBatchOps per frame, maxInflight unanswered; each ack sends the next', () => {
  const t = setup({ maxBatchOps: 3, maxInflight: 2 });
  t.store.write(10);
  t.sync.start();
  const ws = t.connect();
  let p = ws.pushes();
  assert.deepEqual(p.map(ids), [['op-1', 'op-2', 'op-3'], ['op-4', 'op-5', 'op-6']]);
  ws.receive(ackOf(p[0]));
  p = ws.pushes();
  assert.equal(p.length, 3);
  assert.deepEqual(ids(p[2]), ['op-7', 'op-8', 'op-9'], 'only ops not already in flight');
  t.sync.kick();
  assert.equal(ws.pushes().length, 3, 'two unanswered: nothing more until an ack');
  ws.receive(ackOf(p[1]));
  assert.deepEqual(ids(ws.pushes()[3]), ['op-10']);
  ws.receive(ackOf(p[2]));
  assert.equal(ws.pushes().length, 4, 'nothing left to send');
  /* the store was asked only for ops after the last one sent */
  assert.deepEqual(t.store.calls.filter(([n]) => n === 'pending').map(([, a]) => a), [0, 6, 9, 10]);
  /* and told how many it can use: free slots × maxBatchOps */
  assert.deepEqual(t.store.limits, [6, 3, 3, 3]);
});

test('a store whose pending() ignores afterSeq still gets no op pushed twice on one connection', () => {
  const t = setup({ maxBatchOps: 2, maxInflight: 1 });
  t.store.write(3);
  const pending = t.store.pending.bind(t.store);
  t.store.pending = () => pending(0);
  t.sync.start();
  const ws = t.connect();
  ws.receive({ type: 'ack', acked: [], rejected: [], hlc: H }); /* answered, nothing acked yet */
  assert.deepEqual(ws.pushes().map(ids), [['op-1', 'op-2'], ['op-3']]);
});

test('kick() pushes only what was written since, and nothing before the welcome or while the in-flight limit is reached', () => {
  const t = setup({ maxInflight: 1 });
  t.sync.start();
  t.store.write(1);
  t.sync.kick();
  const ws = t.connect();
  assert.deepEqual(ws.pushes().map(ids), [['op-1']]);
  t.store.write(2);
  t.sync.kick();
  assert.equal(ws.pushes().length, 1, 'one unanswered push is the limit');
  ws.receive(ackOf(ws.pushes()[0]));
  assert.deepEqual(ws.pushes().map(ids), [['op-1'], ['op-2', 'op-3']]);
});

test('a push holds about maxBatchBytes of JSON; a bigger op goes alone', () => {
  const t = setup({ maxBatchBytes: 450, maxInflight: 10 });
  t.store.write(4, { title: 'x'.repeat(100) });
  t.store.write(1, { title: 'é'.repeat(300) }); /* 600+ bytes in UTF-8 */
  t.store.write(1);
  t.sync.start();
  const ws = t.connect();
  assert.deepEqual(ws.pushes().map(ids), [['op-1', 'op-2'], ['op-3', 'op-4'], ['op-5'], ['op-6']]);
  for (const s of ws.sent.slice(1, 3)) assert.ok(Buffer.byteLength(s) <= 450 + 40, `frame of ${Buffer.byteLength(s)} bytes`);
});

test('an ack with refusals says rejected and change; acked ops are not resent', () => {
  const t = setup();
  t.store.write(2);
  t.sync.start();
  const ws = t.connect();
  const p = ws.pushes()[0];
  ws.receive(ackOf(p, [{ id: 'op-2', code: 'check_violation', message: 'title too long' }]));
  assert.deepEqual(t.events.filter((e) => e.type === 'rejected'), [
    { type: 'rejected', rejections: [{ id: 'op-2', table: 'issues', row: 'r2', code: 'check_violation', message: 'title too long' }] },
  ]);
  assert.deepEqual(t.events.filter((e) => e.type === 'change'), [{ type: 'change', tables: ['issues'] }]);
  assert.equal(t.store.writes().filter(([n]) => n === 'ack').length, 1);
  ws.serverClose();
  t.timers.advance(250);
  const ws2 = t.connect();
  assert.equal(ws2.pushes().length, 0, 'op-1 acked, op-2 refused: nothing to resend');
});

test('snapshot frames: snapshotBegin once with the granted groups, each frame applied, then changes', () => {
  const t = setup();
  t.sync.start();
  const ws = t.connect({ groups: ['g1', 'g9'] });
  ws.receive({ type: 'snapshot', rows: [{ table: 'issues', row: 'a', fields: { title: 'A' }, clocks: { title: [H, 'c2'] } }], cursor: 40, done: false });
  ws.receive({ type: 'snapshot', rows: [{ table: 'issues', row: 'b', fields: {} }], cursor: 40, done: true });
  ws.receive({ type: 'changes', changes: [{ seq: 41, op_id: 'x', client_id: 'c2', table: 'issues', row: 'a', kind: 'delete', fields: {}, hlc: H }], cursor: 41 });
  const w = t.store.writes().slice(2);
  assert.deepEqual(w.map(([n]) => n), ['snapshotBegin', 'snapshotFrame', 'snapshotFrame', 'applyChanges']);
  assert.deepEqual(w[0][1], ['g1', 'g9']);
  assert.deepEqual(w[1][1].rows[0], { table: 'issues', row: 'a', fields: { title: 'A' }, clocks: { title: [H, 'c2'] } });
  assert.equal(w[3][1].cursor, 41);
  assert.deepEqual(t.events.filter((e) => e.type === 'change').map((e) => e.tables), [['issues'], ['issues'], ['issues']]);
  assert.equal(t.sync.connected, true);
  /* a later snapshot on the same connection begins again */
  ws.receive({ type: 'snapshot', rows: [], cursor: 50, done: true });
  assert.equal(t.store.writes().filter(([n]) => n === 'snapshotBegin').length, 2);
});

test('changes in the middle of a snapshot, or before the welcome, drop the connection unapplied', () => {
  const t = setup();
  t.sync.start();
  const ws = t.connect();
  ws.receive({ type: 'snapshot', rows: [], cursor: 40, done: false });
  ws.receive({ type: 'changes', changes: [], cursor: 41 });
  assert.equal(t.store.writes().filter(([n]) => n === 'applyChanges').length, 0);
  assert.equal(t.sync.connected, false);
  assert.equal(t.statuses().at(-1).lastError.code, 'bad_frame');
  t.timers.advance(250);
  const ws2 = t.last();
  assert.notEqual(ws2, ws);
  ws2.open();
  ws2.receive({ type: 'changes', changes: [], cursor: 41 });
  assert.equal(ws2.closedByClient, 1000);
  assert.equal(t.store.writes().filter(([n]) => n === 'applyChanges').length, 0);
});

const hostileFrames = [
  ['garbage', 'GET / HTTP/1.1'],
  ['not an object', '[1,2,3]'],
  ['a binary frame', new ArrayBuffer(8)],
  ['seq a string', { type: 'changes', changes: [{ seq: '5', op_id: 'x', client_id: 'c', table: 'issues', row: 'r', kind: 'upsert', fields: {}, hlc: H }], cursor: 5 }],
  ['seq 2^53', { type: 'changes', changes: [{ seq: 2 ** 53, op_id: 'x', client_id: 'c', table: 'issues', row: 'r', kind: 'upsert', fields: {}, hlc: H }], cursor: 2 ** 53 - 1 }],
  ['decreasing seqs', { type: 'changes', changes: [
    { seq: 9, op_id: 'x', client_id: 'c', table: 'issues', row: 'r', kind: 'upsert', fields: {}, hlc: H },
    { seq: 8, op_id: 'y', client_id: 'c', table: 'issues', row: 'r', kind: 'upsert', fields: {}, hlc: H }], cursor: 9 }],
  ['a huge row id', { type: 'changes', changes: [{ seq: 1, op_id: 'x', client_id: 'c', table: 'issues', row: 'r'.repeat(1 << 20), kind: 'upsert', fields: {}, hlc: H }], cursor: 1 }],
  ['fields an array', { type: 'snapshot', rows: [{ table: 'issues', row: 'r', fields: [] }], cursor: 1, done: true }],
  ['ack ids numbers', { type: 'ack', acked: [1, 2], rejected: [], hlc: H }],
  ['a bad hlc in a pong', { type: 'pong', hlc: 'later' }],
];
for (const [name, frame] of hostileFrames) {
  test(`hostile frame (${name}): refused before the store, connection closed and retried`, () => {
    const t = setup();
    t.store.write(1);
    t.sync.start();
    const ws = t.connect();
    const before = t.store.writes().length;
    ws.receive(frame);
    assert.equal(t.store.writes().length, before, 'the store was not called');
    assert.equal(ws.closedByClient, 1000, 'the socket was closed');
    assert.equal(t.sync.connected, false);
    const st = t.statuses().at(-1);
    assert.equal(st.connected, false);
    assert.equal(st.lastError.code, 'bad_frame');
    assert.equal(t.timers.count, 1, 'only the retry is waiting');
    t.timers.advance(250);
    assert.equal(t.sockets.length, 2, 'reconnected');
    const ws2 = t.connect();
    assert.deepEqual(ws2.pushes().map(ids), [['op-1']], 'the op is resent');
    ws.receive({ type: 'changes', changes: [], cursor: 1 });
    assert.equal(t.store.writes().filter(([n]) => n === 'applyChanges').length, 0, 'the old socket is ignored');
  });
}

test('a store call that throws drops the connection (local_error) and leaves nothing counted in flight', () => {
  const t = setup({ maxInflight: 1 });
  t.store.write(2);
  t.sync.start();
  t.store.fail.pending = new Error('disk I/O error');
  const ws = t.connect();
  assert.equal(ws.pushes().length, 0);
  assert.equal(t.sync.connected, false);
  assert.deepEqual(t.statuses().at(-1).lastError, { code: 'local_error', message: 'reading the outbox: disk I/O error' });
  t.timers.advance(250);
  const ws2 = t.connect();
  assert.deepEqual(ws2.pushes().map(ids), [['op-1', 'op-2']], 'the one in-flight slot is free');
  /* ack throws: the push is answered, the connection ends, the next one resends */
  t.store.fail.ack = new Error('SQLITE_FULL');
  ws2.receive(ackOf(ws2.pushes()[0]));
  assert.equal(t.statuses().at(-1).lastError.code, 'local_error');
  t.timers.advance(1000);
  const ws3 = t.connect();
  assert.deepEqual(ws3.pushes().map(ids), [['op-1', 'op-2']]);
  /* applyChanges throws: same, and no change event */
  const changeEvents = t.events.filter((e) => e.type === 'change').length;
  t.store.fail.applyChanges = new Error('constraint');
  ws3.receive({ type: 'changes', changes: [], cursor: 3 });
  assert.equal(t.sync.connected, false);
  assert.equal(t.events.filter((e) => e.type === 'change').length, changeEvents);
});

test('ensureTables failing: local_error, no push, retried with backoff', () => {
  const t = setup();
  t.store.write(1);
  t.sync.start();
  t.store.fail.ensureTables = new Error('table issues exists with other columns');
  const ws = t.connect();
  assert.equal(ws.pushes().length, 0);
  assert.equal(t.sync.connected, false);
  assert.equal(t.statuses().at(-1).lastError.code, 'local_error');
  assert.equal(t.statuses().some((s) => s.connected), false, 'never said connected');
  assert.equal(t.timers.count, 1);
});

test('a half-open socket: no answer to a ping within pongTimeoutMs drops and reconnects', () => {
  const t = setup({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
  t.sync.start();
  const ws = t.connect();
  t.timers.advance(999);
  assert.equal(ws.frames().filter((f) => f.type === 'ping').length, 0);
  t.timers.advance(1);
  assert.equal(ws.frames().filter((f) => f.type === 'ping').length, 1);
  ws.receive({ type: 'pong', hlc: H });
  t.timers.advance(999);
  assert.equal(t.sync.connected, true, 'answered: still connected');
  t.timers.advance(1);
  assert.equal(ws.frames().filter((f) => f.type === 'ping').length, 2, 'the next ping an interval after the pong');
  t.timers.advance(499);
  assert.equal(t.sync.connected, true);
  t.timers.advance(1);
  assert.equal(t.sync.connected, false, 'no pong: half-open');
  assert.equal(ws.closedByClient, 1000);
  assert.equal(t.statuses().at(-1).lastError.code, 'timeout');
  t.timers.advance(250);
  assert.equal(t.sockets.length, 2, 'reconnecting');
});

test('any frame after a ping keeps the socket alive; silence does not', () => {
  const t = setup({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
  t.sync.start();
  const ws = t.connect();
  t.timers.advance(1000); /* ping out */
  for (let i = 1; i <= 4; i++) {
    t.timers.advance(400);
    ws.receive({ type: 'changes', changes: [], cursor: i });
  }
  assert.equal(t.sync.connected, true, 'a long backlog is not silence');
  t.timers.advance(500);
  assert.equal(t.sync.connected, false);
});

test('no welcome within connectTimeoutMs: dropped and retried', () => {
  const t = setup({ connectTimeoutMs: 3000 });
  t.sync.start();
  t.last().open();
  t.timers.advance(2999);
  assert.equal(t.sockets.length, 1);
  t.timers.advance(1);
  assert.equal(t.last().closedByClient, 1000);
  assert.equal(t.statuses().at(-1).lastError.code, 'timeout');
  t.timers.advance(250);
  assert.equal(t.sockets.length, 2);
});

test('backoff: jittered in [d/2, d], doubling, capped; reset by a welcomed connection lost to the network', () => {
  let r = 0.999999;
  const t = setup({ backoffMinMs: 100, backoffMaxMs: 1000, random: () => r });
  t.sync.start();
  const delays = [];
  for (let i = 0; i < 7; i++) {
    t.last().fail();
    assert.equal(t.timers.count, 1);
    delays.push(t.timers.delays()[0]);
    t.timers.advance(delays.at(-1));
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000, 1000], 'the top of each range');
  r = 0;
  t.last().fail();
  assert.deepEqual(t.timers.delays(), [500], 'the bottom of the range: d/2');
  t.timers.advance(500);
  r = 0.999999;
  t.connect();
  t.last().serverClose(1001, '');
  assert.deepEqual(t.timers.delays(), [100], 'after a welcome: back to the minimum');
  t.timers.advance(100);
  /* a welcomed connection ended by a bad frame keeps growing the backoff */
  t.connect().receive('garbage');
  assert.deepEqual(t.timers.delays(), [200]);
});

test('the jitter spreads retries: different random values, different delays', () => {
  const seen = new Set();
  for (const r of [0, 0.25, 0.5, 0.75, 0.99]) {
    const t = setup({ backoffMinMs: 1000, random: () => r });
    t.sync.start();
    t.last().fail();
    const [d] = t.timers.delays();
    assert.ok(d >= 500 && d <= 1000, `${d}`);
    seen.add(d);
  }
  assert.equal(seen.size, 5);
});

test('unauthorized: said with the server\'s message, no retry, online() does not retry; start() does', () => {
  const t = setup();
  t.sync.start();
  const ws = t.last();
  ws.open();
  ws.receive({ type: 'error', code: 'unauthorized', message: 'token revoked' });
  assert.deepEqual(t.statuses().at(-1), { type: 'status', connected: false, lastError: { code: 'unauthorized', message: 'token revoked' } });
  assert.equal(ws.closedByClient, 1000);
  assert.equal(t.timers.count, 0, 'no retry scheduled');
  t.timers.advance(10 * 60 * 1000);
  t.sync.online();
  assert.equal(t.sockets.length, 1);
  t.sync.start();
  assert.equal(t.sockets.length, 2, 'an explicit start() tries again');
});

test('a close whose reason names unauthorized also stops retrying', () => {
  const t = setup();
  t.sync.start();
  t.connect();
  t.last().serverClose(4001, 'unauthorized: token expired');
  assert.equal(t.statuses().at(-1).lastError.code, 'unauthorized');
  assert.equal(t.timers.count, 0);
});

test('an error frame with pushes unanswered reconnects and resends; without, the connection stays', () => {
  const t = setup();
  t.sync.start();
  const ws = t.connect();
  ws.receive({ type: 'error', code: 'rate_limited', message: 'slow down' });
  assert.equal(t.sync.connected, true);
  assert.deepEqual(t.statuses().at(-1), { type: 'status', connected: true, lastError: { code: 'rate_limited', message: 'slow down' } });
  t.store.write(2);
  t.sync.kick();
  ws.receive({ type: 'error', code: 'server_unavailable', message: 'the database is unreachable' });
  assert.equal(t.sync.connected, false);
  assert.equal(t.statuses().at(-1).lastError.code, 'server_unavailable');
  t.timers.advance(t.timers.delays()[0]);
  assert.deepEqual(t.connect().pushes().map(ids), [['op-1', 'op-2']]);
});

test('a second welcome is ignored; unknown frame types are ignored', () => {
  const t = setup();
  t.sync.start();
  const ws = t.connect();
  ws.receive({ type: 'welcome', cursor: 5, hlc: H, groups: [], tables: {} });
  ws.receive({ type: 'notice', text: 'hello' });
  assert.equal(t.store.writes().filter(([n]) => n === 'ensureTables').length, 1);
  assert.equal(t.sync.connected, true);
});

test('offline() closes and waits; online() reconnects at once with the backoff reset', () => {
  const t = setup({ backoffMinMs: 100, backoffMaxMs: 10000, random: () => 0.999999 });
  t.sync.start();
  for (let i = 0; i < 4; i++) {
    t.last().fail();
    t.timers.advance(t.timers.delays()[0]);
  }
  const ws = t.connect();
  t.sync.offline();
  assert.equal(ws.closedByClient, 1000);
  assert.deepEqual(t.statuses().at(-1).lastError.code, 'offline');
  assert.equal(t.timers.count, 1, 'the backoff may still try');
  const n = t.sockets.length;
  t.sync.online();
  assert.equal(t.sockets.length, n + 1, 'connecting now');
  t.last().fail();
  assert.deepEqual(t.timers.delays(), [100], 'backoff reset by online()');
});

test('online() on a live connection pings at once to find out whether it survived', () => {
  const t = setup({ pingIntervalMs: 10000, pongTimeoutMs: 300 });
  t.sync.start();
  const ws = t.connect();
  t.sync.online();
  assert.deepEqual(ws.frames().at(-1), { type: 'ping' });
  t.timers.advance(300);
  assert.equal(t.sync.connected, false);
});

test('stop() closes the socket and leaves no timer, in every state', () => {
  /* connecting */
  let t = setup();
  t.sync.start();
  t.sync.stop();
  assert.equal(t.last().closedByClient, 1000);
  assert.equal(t.timers.count, 0);
  /* live, with a ping waiting and a ping out */
  t = setup({ pingIntervalMs: 100 });
  t.sync.start();
  t.store.write(1);
  const ws = t.connect();
  t.timers.advance(100);
  assert.ok(t.timers.count > 0);
  t.sync.stop();
  assert.equal(t.sync.connected, false);
  assert.equal(ws.closedByClient, 1000);
  assert.equal(t.timers.count, 0);
  assert.deepEqual(t.statuses().at(-1), { type: 'status', connected: false, lastError: null });
  ws.receive({ type: 'ack', acked: ['op-1'], rejected: [], hlc: H });
  assert.equal(t.store.writes().filter(([n]) => n === 'ack').length, 0, 'a stopped socket is ignored');
  t.sync.kick();
  t.sync.online();
  t.timers.advance(60000);
  assert.equal(t.sockets.length, 1);
  /* waiting for a retry */
  t = setup();
  t.sync.start();
  t.last().fail();
  assert.equal(t.timers.count, 1);
  t.sync.stop();
  assert.equal(t.timers.count, 0);
  t.timers.advance(60000);
  assert.equal(t.sockets.length, 1);
  /* and start() again works */
  t.sync.start();
  assert.equal(t.sockets.length, 2);
  /* a welcome cleared the error of the failed attempt: stop() says none */
  t.connect();
  t.sync.stop();
  assert.deepEqual(t.statuses().at(-1), { type: 'status', connected: false, lastError: null });
});

test('an event handler may call stop() or throw without breaking the bookkeeping', () => {
  const timers = new FakeTimers();
  const { FakeWS, sockets } = fakeSocketClass();
  const store = new FakeStore();
  store.write(1);
  let sync;
  const thrown = [];
  globalThis.reportError = (e) => thrown.push(e);
  try {
    sync = new Sync({ url: 'ws://x/', token: 't', groups: [], store, WebSocket: FakeWS, setTimer: timers.set, clearTimer: timers.clear }, (e) => {
      if (e.type === 'status' && e.connected) sync.stop();
      if (e.type === 'status' && !e.connected) throw new Error('app bug');
    });
    sync.start();
    sockets[0].open();
    sockets[0].receive({ type: 'welcome', cursor: 0, hlc: H, groups: [], tables: TABLES });
    assert.equal(sync.connected, false);
    assert.equal(sockets[0].pushes().length, 0, 'stopped from the handler: nothing pushed');
    assert.equal(timers.count, 0);
    assert.equal(thrown.length, 1);
    assert.equal(thrown[0].message, 'app bug');
  } finally {
    delete globalThis.reportError;
  }
});

test('options are checked', () => {
  const { FakeWS } = fakeSocketClass();
  assert.throws(() => new Sync({ url: 'ws://x/', token: 't', groups: [], store: new FakeStore(), WebSocket: FakeWS, maxBatchOps: 0 }, () => {}), /maxBatchOps/);
});

test('every frame applied says applied, also one that changes no visible row', () => {
  const t = setup();
  t.store.write(1);
  t.sync.start();
  const ws = t.connect();
  const before = t.events.filter((e) => e.type === 'applied').length;
  ws.receive(ackOf(ws.pushes()[0]));
  const after = t.events.filter((e) => e.type === 'applied').length;
  assert.equal(after, before + 1, 'an ack that rejects nothing still moves the outbox: the worker refreshes status on it');
  assert.equal(t.events.filter((e) => e.type === 'change').length, 0, 'no visible row changed');
});
