// web/test/sync_store.test.mjs: src/sync.ts on the real store (src/store.ts
// on sqlite-wasm, an in-memory database) behind a fake WebSocket and fake
// timers: writes made offline reach the server with their own ids, come back
// as changes and leave the outbox; a refusal rolls the row back and is
// reported with its table and row; a snapshot fills the tables; a reconnect
// resends with the same ids; a hostile frame leaves the database untouched.
// sync.test.mjs covers the connection's life itself with a fake store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sqlite3InitModule from '@sqlite.org/sqlite-wasm';

import { Store } from '../build/lib/store.js';
import { Sync } from '../build/lib/sync.js';

const sqlite3 = await sqlite3InitModule();
const H = '0000018c2f3a4b5c';
const TABLES = { issues: { pk: 'id', group: 'team', columns: { id: 'text', team: 'text', title: 'text', prio: 'integer' } } };

function setup() {
  const store = new Store(new sqlite3.oo1.DB(':memory:'), { capi: sqlite3.capi });
  store.ensureTables(TABLES); /* as a previous session left it */
  const sockets = [];
  class FakeWS {
    constructor(url, protocols) {
      Object.assign(this, { url, protocols, sent: [], closed: false, onopen: null, onmessage: null, onclose: null, onerror: null });
      sockets.push(this);
    }
    send(d) { this.sent.push(d); }
    close() { this.closed = true; }
    pushes() { return this.sent.map((s) => JSON.parse(s)).filter((f) => f.type === 'push'); }
    receive(f) { this.onmessage?.({ data: typeof f === 'string' ? f : JSON.stringify(f) }); }
  }
  const timers = new Map();
  let next = 1;
  const events = [];
  const sync = new Sync({
    url: 'ws://gw.test/', token: 'tok', groups: ['g1'], store, WebSocket: FakeWS,
    setTimer: (fn, ms) => { timers.set(next, { fn, ms }); return next++; },
    clearTimer: (id) => timers.delete(id),
    random: () => 0,
  }, (e) => events.push(e));
  const connect = (welcome = {}) => {
    const ws = sockets.at(-1);
    ws.onopen({});
    ws.receive({ type: 'welcome', cursor: 0, hlc: H, groups: ['g1'], tables: TABLES, ...welcome });
    return ws;
  };
  /* runs the retry, the one timer left once a connection ended */
  const retry = () => {
    assert.equal(timers.size, 1);
    const [[id, t]] = [...timers];
    timers.delete(id);
    t.fn();
  };
  const rows = () => store.query('SELECT id, title, prio FROM issues ORDER BY id');
  return { store, sync, sockets, events, connect, retry, rows };
}

test('writes made offline are pushed with their ids, acked, and leave the outbox when their changes come back', () => {
  const t = setup();
  const a = t.store.put('issues', 'a', { team: 'g1', title: 'first', prio: 1 });
  const b = t.store.put('issues', 'b', { team: 'g1', title: 'second' });
  t.sync.start();
  assert.equal(t.sockets[0].sent.length, 0, 'not open yet: nothing sent');
  const ws = t.connect();
  const hello = JSON.parse(ws.sent[0]);
  assert.deepEqual([hello.type, hello.client_id, hello.cursor, hello.hlc], ['hello', t.store.clientId, 0, t.store.hlc()]);
  const [push] = ws.pushes();
  assert.deepEqual(push.ops.map((o) => o.id), [a.id, b.id]);
  assert.deepEqual(push.ops[0].fields, { team: 'g1', title: 'first', prio: 1 });
  ws.receive({ type: 'ack', acked: [a.id, b.id], rejected: [], hlc: H });
  assert.equal(t.store.pending().length, 0, 'acked: nothing to resend');
  assert.equal(t.store.pendingCount(), 2, 'but pending until their changes arrive');
  ws.receive({
    type: 'changes', cursor: 2, changes: push.ops.map((o, i) => ({
      seq: i + 1, op_id: o.id, client_id: t.store.clientId, table: o.table, row: o.row, group: 'g1',
      kind: o.kind, fields: o.fields, hlc: o.hlc,
    })),
  });
  assert.equal(t.store.pendingCount(), 0);
  assert.equal(t.store.cursor(), 2);
  assert.deepEqual(t.rows(), [{ id: 'a', title: 'first', prio: 1 }, { id: 'b', title: 'second', prio: null }]);
  assert.deepEqual(t.events.filter((e) => e.type === 'change'), [], 'our own ops confirmed: nothing visible changed');
  /* another client's change, a millisecond after our clock, does change a visible row */
  const later = (BigInt(`0x${t.store.hlc()}`) + 0x10000n).toString(16).padStart(16, '0');
  ws.receive({ type: 'changes', cursor: 3, changes: [
    { seq: 3, op_id: 'o-3', client_id: 'other', table: 'issues', row: 'b', group: 'g1', kind: 'upsert', fields: { prio: 9 }, hlc: later },
  ] });
  assert.deepEqual(t.events.filter((e) => e.type === 'change'), [{ type: 'change', tables: ['issues'] }]);
  assert.deepEqual(t.rows()[1], { id: 'b', title: 'second', prio: 9 });
});

test('a refusal rolls the row back and is reported with its table and row', () => {
  const t = setup();
  t.sync.start();
  const ws = t.connect();
  const w = t.store.put('issues', 'x', { team: 'g1', title: 'too long' });
  t.sync.kick();
  assert.deepEqual(ws.pushes().at(-1).ops.map((o) => o.id), [w.id]);
  assert.equal(t.rows().length, 1, 'visible at once');
  ws.receive({ type: 'ack', acked: [], rejected: [{ id: w.id, code: 'check_violation', message: 'title too long' }], hlc: H });
  assert.deepEqual(t.events.filter((e) => e.type === 'rejected'), [
    { type: 'rejected', rejections: [{ id: w.id, table: 'issues', row: 'x', code: 'check_violation', message: 'title too long' }] },
  ]);
  assert.deepEqual(t.rows(), []);
  assert.equal(t.store.pendingCount(), 0);
});

test('a snapshot fills the tables; unacked ops are resent after a reconnect with the same ids', () => {
  const t = setup();
  const w = t.store.put('issues', 'mine', { team: 'g1', title: 'local' });
  t.sync.start();
  const ws = t.connect({ cursor: 7 });
  ws.receive({ type: 'snapshot', cursor: 7, done: true, rows: [
    { table: 'issues', row: 's1', fields: { id: 's1', team: 'g1', title: 'from server', prio: 3 }, clocks: { title: [H, 'other'], prio: [H, 'other'] } },
  ] });
  assert.equal(t.store.cursor(), 7);
  assert.deepEqual(t.rows(), [{ id: 'mine', title: 'local', prio: null }, { id: 's1', title: 'from server', prio: 3 }]);
  const first = ws.pushes()[0].ops.map((o) => o.id);
  ws.onclose({ code: 1006, reason: '' });
  t.retry();
  const ws2 = t.connect({ cursor: 7 });
  assert.deepEqual(JSON.parse(ws2.sent[0]).cursor, 7, 'hello carries the snapshot\'s cursor');
  assert.deepEqual(ws2.pushes()[0].ops.map((o) => o.id), first);
  assert.deepEqual(first, [w.id]);
});

test('a hostile changes frame leaves the database as it was', () => {
  const t = setup();
  t.sync.start();
  const ws = t.connect();
  ws.receive({ type: 'changes', cursor: 5, changes: [
    { seq: 5, op_id: 'o1', client_id: 'c2', table: 'issues', row: 'evil', kind: 'upsert', fields: { id: 'evil', team: 'g1', title: 'x' }, hlc: H },
    { seq: 4, op_id: 'o2', client_id: 'c2', table: 'issues', row: 'evil2', kind: 'upsert', fields: { id: 'evil2', team: 'g1', title: 'y' }, hlc: H },
  ] });
  assert.equal(ws.closed, true);
  assert.equal(t.store.cursor(), 0);
  assert.deepEqual(t.rows(), []);
  assert.equal(t.events.filter((e) => e.type === 'status').at(-1).lastError.code, 'bad_frame');
});
