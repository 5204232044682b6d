/*
 * web/src/sync.ts: one synclog.v1 connection's life (../shared/PROTOCOL.md)
 * in the owner worker, over the browser's WebSocket: hello, the backlog
 * (snapshot or changes) into the store, unacked ops resent and new ones
 * pushed in bounded batches with a bounded number unanswered, ping/pong
 * liveness, reconnecting with jittered backoff, online/offline.  The C
 * client's client/net.c is the reference for every decision; where this
 * file differs it says so.
 *
 * States.  Sync as a whole is 'stopped' (before start(), after stop()),
 * 'running' (connected or trying to be) or 'auth_failed' (the server said
 * unauthorized: no attempt until start() is called again).  While running
 * there is at most one connection (Conn), itself 'connecting' (the socket is
 * not open yet), 'hello' (open, hello sent, no welcome yet) or 'live'
 * (welcomed: pushes go out, the backlog and live changes come in); with no
 * connection the next attempt waits on retryTimer.  Every way a connection
 * ends goes through drop(), which detaches the socket (its late events are
 * ignored: each handler checks that its Conn is still the current one),
 * clears the connection's timers, says 'status' once and schedules the next
 * attempt.
 *
 * Pushing.  conn.sentSeq is the outbox seq of the last op sent on this
 * connection (0 on each new one: every unacked op is resent, same ids, and
 * the server acks a duplicate without applying it twice).  At most
 * maxInflight push frames wait for their ack, each of at most maxBatchOps
 * ops and about maxBatchBytes of JSON (a bigger op goes alone).  sentSeq and
 * inflight change only after a frame was handed to the socket, so a store
 * call that throws leaves them true.  An `error` frame while pushes are
 * unanswered may be the answer to one of them ("the push was not applied"):
 * the connection is dropped and everything unacked is resent on the next.
 *
 * Frames.  Each server frame is validated whole by protocol.ts before the
 * store sees it.  A malformed frame, or one out of place (changes before the
 * welcome or in the middle of a snapshot), is the server's fault: the
 * connection is dropped (lastError bad_frame) and the client reconnects,
 * reading again from its cursor.  A store call that throws on a frame is a
 * local failure: the same (lastError local_error), since the store's
 * transaction left it as it was before the frame.
 *
 * Liveness.  A socket whose peer vanished (a laptop lid, a NAT timeout) can
 * stay "open" for minutes.  Once welcomed, a ping goes out every
 * pingIntervalMs; if no frame at all arrives within pongTimeoutMs after it
 * (any frame proves the socket alive, so a long backlog cannot be mistaken
 * for silence), the socket is dropped as half-open.  net.c has no ping: lws
 * handles its sockets' liveness.
 *
 * Backoff.  After a connection ends, the next attempt waits a random delay
 * in [d/2, d]; d starts at backoffMinMs and doubles up to backoffMaxMs
 * (net.c's rule).  A welcomed connection that ends for a network reason
 * (closed, lost, no pong, offline) starts again from backoffMinMs; one that
 * ends because of the server's frames or an error frame, or a local failure,
 * keeps growing d, so a server that welcomes and then fails every time is not
 * hammered four times a second (net.c resets on every welcome).
 *
 * lastError codes: the server's error codes (unauthorized, server_unavailable,
 * rate_limited, too_large, bad_frame, hello_required, ...), bad_frame for a
 * frame this client refused, local_error for a store call that threw,
 * network for a socket that could not connect or was closed, timeout for no
 * welcome or no pong in time, offline for offline().  A welcome clears it.
 *
 * Events are said through onEvent synchronously; onEvent may call back into
 * Sync (stop(), kick(), ...): every handler re-checks its connection after
 * saying one.  An exception thrown by onEvent goes to reportError (or is
 * rethrown from a microtask), so it is reported but cannot break the
 * connection's bookkeeping.
 */

import { ProtocolError, encodeOp, helloFrame, parseServerFrame, pingFrame, pushFrameOf } from './protocol.js';
import type {
  AckFrame,
  ChangesFrame,
  ErrorFrame,
  OutboxOp,
  Rejection,
  SnapshotFrame,
  Tables,
  WelcomeFrame,
} from './types.js';

/* The subset of store.ts's Store that sync uses. */
export interface SyncStore {
  readonly clientId: string;
  cursor(): number;
  hlc(): string;
  observe(hlc: string): void;
  ensureTables(tables: Tables): void;
  applyChanges(frame: ChangesFrame): Set<string>;
  ack(frame: AckFrame): { rejected: Rejection[]; tables: Set<string> };
  snapshotBegin(groups: string[] | null): void;
  snapshotFrame(frame: SnapshotFrame): { done: boolean; tables: Set<string> };
  /*
   * Unacked ops with seq above afterSeq (all when absent), in outbox order.
   * limit is a hint: sync never uses more than limit ops of one call, so a
   * store may stop reading there (one that ignores it is still correct).
   */
  pending(afterSeq?: number, limit?: number): OutboxOp[];
  pendingCount(): number;
}

export type SyncEvent =
  | { type: 'status'; connected: boolean; lastError: { code: string; message: string } | null }
  | { type: 'change'; tables: string[] } /* visible rows of these tables changed by the server */
  | { type: 'rejected'; rejections: Rejection[] }
  | { type: 'applied' } /* a frame went into the store: cursor and outbox may have moved */;

/* The part of the browser's WebSocket that sync uses (a test passes a fake). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols: string) => WebSocketLike;

export interface SyncOptions {
  url: string;
  token: string;
  groups: string[];
  store: SyncStore;
  WebSocket?: WebSocketConstructor;  /* default globalThis.WebSocket; subprotocol 'synclog.v1' */
  maxBatchOps?: number;              /* ops per push; default 100 (net.c's batch_ops) */
  maxBatchBytes?: number;            /* about this much JSON per push; default 256 KiB (net.c) */
  maxInflight?: number;              /* pushes unanswered at once; default 4 (net.c) */
  pingIntervalMs?: number;           /* default 10000 */
  pongTimeoutMs?: number;            /* default 10000: then the socket is half-open */
  connectTimeoutMs?: number;         /* no welcome within this: drop and retry; default 10000 */
  backoffMinMs?: number;             /* default 250 */
  backoffMaxMs?: number;             /* default 30000 */
  random?: () => number;             /* in [0, 1); default Math.random */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

export const SUBPROTOCOL = 'synclog.v1';

type LastError = { code: string; message: string };

/* Why a connection ended: decides whether a welcomed connection resets the backoff. */
type EndKind = 'network' | 'fault';

type ConnState = 'connecting' | 'hello' | 'live';

/* One of these per socket, from its creation until drop(). */
interface Conn {
  ws: WebSocketLike;
  state: ConnState;
  granted: string[] | null; /* welcome.groups */
  sentSeq: number;          /* outbox seq of the last op pushed on this connection */
  inflight: number;         /* push frames not answered yet */
  snapOpen: boolean;        /* a snapshot is being received */
  helloTimer: unknown;      /* no welcome in time; null once welcomed */
  pingTimer: unknown;       /* the next ping; null while one is unanswered */
  pongTimer: unknown;       /* no frame since the ping in time; null when none is out */
}

/* A positive integer option, or its default. */
function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v <= 0) throw new TypeError(`synclog: ${name} must be a positive number, not ${v}`);
  return Math.floor(v);
}

/* The UTF-8 length of s (what the server's max_frame_bytes counts). */
function utf8Length(s: string): number {
  let n = s.length; /* one byte per UTF-16 unit, plus what each needs beyond that */
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 2; /* a pair: 4 bytes for 2 units */
      i++;
    } else n += 2;
  }
  return n;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class Sync {
  private readonly store: SyncStore;
  private readonly url: string;
  private readonly token: string;
  private readonly groups: string[];
  private readonly WS: WebSocketConstructor;
  private readonly maxBatchOps: number;
  private readonly maxBatchBytes: number;
  private readonly maxInflight: number;
  private readonly pingIntervalMs: number;
  private readonly pongTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly backoffMinMs: number;
  private readonly backoffMaxMs: number;
  private readonly random: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (t: unknown) => void;

  private mode: 'stopped' | 'running' | 'auth_failed' = 'stopped';
  private conn: Conn | null = null;
  private retryTimer: unknown = null;
  private backoffMs: number;               /* the next retry delay's ceiling */
  private lastError: LastError | null = null;

  constructor(opts: SyncOptions, private readonly onEvent: (e: SyncEvent) => void) {
    this.store = opts.store;
    this.url = opts.url;
    this.token = opts.token;
    this.groups = [...opts.groups];
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WS === undefined) throw new TypeError('synclog: no WebSocket in this environment; pass opts.WebSocket');
    this.WS = WS;
    this.maxBatchOps = positive(opts.maxBatchOps, 100, 'maxBatchOps');
    this.maxBatchBytes = positive(opts.maxBatchBytes, 256 * 1024, 'maxBatchBytes');
    this.maxInflight = positive(opts.maxInflight, 4, 'maxInflight');
    this.pingIntervalMs = positive(opts.pingIntervalMs, 10000, 'pingIntervalMs');
    this.pongTimeoutMs = positive(opts.pongTimeoutMs, 10000, 'pongTimeoutMs');
    this.connectTimeoutMs = positive(opts.connectTimeoutMs, 10000, 'connectTimeoutMs');
    this.backoffMinMs = positive(opts.backoffMinMs, 250, 'backoffMinMs');
    this.backoffMaxMs = Math.max(positive(opts.backoffMaxMs, 30000, 'backoffMaxMs'), this.backoffMinMs);
    this.random = opts.random ?? Math.random;
    this.setTimer = opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = opts.clearTimer ?? ((t) => clearTimeout(t as ReturnType<typeof setTimeout>));
    this.backoffMs = this.backoffMinMs;
  }

  /* Welcomed on an open socket. */
  get connected(): boolean {
    return this.conn !== null && this.conn.state === 'live';
  }

  /* Connects now and stays connected until stop(); after unauthorized, tries again. */
  start(): void {
    if (this.mode === 'running') return;
    this.mode = 'running';
    this.backoffMs = this.backoffMinMs;
    this.connectNow();
  }

  /* Closes the socket and stops reconnecting; no timer is left.  Says 'status' if a connection ended. */
  stop(): void {
    this.mode = 'stopped';
    this.cancelRetry();
    if (this.conn !== null) this.drop(this.conn, null, 'network');
  }

  /* New ops were written locally: pushes what fits now, if welcomed. */
  kick(): void {
    const c = this.conn;
    if (c !== null && c.state === 'live') this.attempt(c, 'reading the outbox', () => this.pushMore(c));
  }

  /*
   * The browser says the network is back: connects now with the backoff
   * reset, or, on a live connection, pings at once (a network change may
   * have left that socket half-open).
   */
  online(): void {
    if (this.mode !== 'running') return;
    this.backoffMs = this.backoffMinMs;
    const c = this.conn;
    if (c === null) this.connectNow();
    else if (c.state === 'live' && c.pongTimer === null) {
      this.clear(c.pingTimer);
      this.sendPing(c);
    }
  }

  /* The browser says the network is gone: closes the socket; the backoff or online() tries again. */
  offline(): void {
    if (this.mode !== 'running' || this.conn === null) return;
    this.drop(this.conn, { code: 'offline', message: 'the browser reports that the network is gone' }, 'network');
  }

  /* ---------------------------------------------------------------- connection life */

  private connectNow(): void {
    this.cancelRetry();
    if (this.mode !== 'running' || this.conn !== null) return;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.url, SUBPROTOCOL);
    } catch (e) {
      /* a malformed url, or a blocked port: said, and retried like any failure */
      this.lastError = { code: 'network', message: `cannot connect to ${this.url}: ${describe(e)}` };
      this.scheduleRetry();
      this.say({ type: 'status', connected: false, lastError: this.lastError });
      return;
    }
    const c: Conn = {
      ws, state: 'connecting', granted: null, sentSeq: 0, inflight: 0, snapOpen: false,
      helloTimer: null, pingTimer: null, pongTimer: null,
    };
    this.conn = c;
    ws.onopen = () => this.onOpen(c);
    ws.onmessage = (ev) => this.onMessage(c, ev.data);
    ws.onclose = (ev) => this.onClose(c, ev);
    /* an error event is followed by close, but carries nothing: end now, once */
    ws.onerror = () => this.drop(c, {
      code: 'network',
      message: c.state === 'connecting' ? `cannot connect to ${this.url}` : `the connection to ${this.url} failed`,
    }, 'network');
    c.helloTimer = this.setTimer(() => this.drop(c, {
      code: 'timeout',
      message: `cannot connect to ${this.url}: no welcome within ${this.connectTimeoutMs} ms`,
    }, 'network'), this.connectTimeoutMs);
  }

  /*
   * Ends connection c, if it is still the current one: detaches and closes
   * its socket (unless it is closed already), clears its timers, records err
   * (null: keep lastError, as stop() does), schedules the next attempt
   * while running, and says 'status'.
   */
  private drop(c: Conn, err: LastError | null, kind: EndKind, socketClosed = false): void {
    if (this.conn !== c) return;
    this.conn = null;
    this.clear(c.helloTimer);
    this.clear(c.pingTimer);
    this.clear(c.pongTimer);
    c.helloTimer = c.pingTimer = c.pongTimer = null;
    const ws = c.ws;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (!socketClosed) {
      try {
        ws.close(1000);
      } catch {
        /* already closing or closed */
      }
    }
    if (err !== null) this.lastError = err;
    if (this.mode === 'running') {
      if (c.state === 'live' && kind === 'network') this.backoffMs = this.backoffMinMs;
      this.scheduleRetry();
    }
    this.say({ type: 'status', connected: false, lastError: this.lastError });
  }

  /* The next attempt after a random delay in [d/2, d]; d doubles up to backoffMaxMs. */
  private scheduleRetry(): void {
    this.cancelRetry();
    const d = this.backoffMs;
    const half = Math.floor(d / 2);
    const delay = half + Math.min(d - half, Math.floor(this.random() * (d - half + 1)));
    this.backoffMs = d > this.backoffMaxMs / 2 ? this.backoffMaxMs : d * 2;
    this.retryTimer = this.setTimer(() => {
      this.retryTimer = null;
      this.connectNow();
    }, delay);
  }

  private cancelRetry(): void {
    this.clear(this.retryTimer);
    this.retryTimer = null;
  }

  private clear(t: unknown): void {
    if (t !== null) this.clearTimer(t);
  }

  /*
   * Sends text on c; false after dropping c when the socket refuses it.  The
   * browser's send throws only before the socket is open; on a closing one
   * it discards, and the close event follows.
   */
  private send(c: Conn, text: string): boolean {
    try {
      c.ws.send(text);
      return true;
    } catch (e) {
      this.drop(c, { code: 'network', message: `cannot send to ${this.url}: ${describe(e)}` }, 'network');
      return false;
    }
  }

  /*
   * Runs fn, which calls the store: {value} with what it returned, or null
   * after dropping c as a local failure when it threw.
   */
  private attempt<T>(c: Conn, what: string, fn: () => T): { value: T } | null {
    try {
      return { value: fn() };
    } catch (e) {
      this.drop(c, { code: 'local_error', message: `${what}: ${describe(e)}` }, 'fault');
      return null;
    }
  }

  /* Says e to the application; its exceptions are reported, not propagated. */
  private say(e: SyncEvent): void {
    try {
      this.onEvent(e);
    } catch (err) {
      /* the platform's report (an error event on the worker), or an uncaught exception */
      const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
      if (typeof report === 'function') report(err);
      else queueMicrotask(() => {
        throw err;
      });
    }
  }

  /* ---------------------------------------------------------------- socket events */

  private onOpen(c: Conn): void {
    if (this.conn !== c) return;
    c.state = 'hello';
    const hello = this.attempt(c, 'reading the cursor and clock for the hello', () => helloFrame({
      client_id: this.store.clientId,
      token: this.token,
      groups: this.groups,
      cursor: this.store.cursor(),
      hlc: this.store.hlc(),
    }));
    if (hello !== null) this.send(c, hello.value);
  }

  private onClose(c: Conn, ev: { code: number; reason: string }): void {
    if (this.conn !== c) return;
    /* a close that names unauthorized is the token's refusal, as in net.c */
    if (typeof ev.reason === 'string' && ev.reason.includes('unauthorized')) {
      this.mode = 'auth_failed';
      this.cancelRetry();
      this.drop(c, { code: 'unauthorized', message: `the server closed the connection: ${ev.reason}` }, 'fault', true);
      return;
    }
    const why = ev.code !== 1006 && ev.code !== 0
      ? `the server closed the connection (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`
      : c.state === 'connecting' ? `cannot connect to ${this.url}` : `the connection to ${this.url} was lost`;
    this.drop(c, { code: 'network', message: why }, 'network', true);
  }

  private onMessage(c: Conn, data: unknown): void {
    if (this.conn !== c) return;
    let frame;
    try {
      if (typeof data !== 'string') throw new ProtocolError('a binary frame (synclog.v1 sends text frames)');
      frame = parseServerFrame(data);
    } catch (e) {
      this.drop(c, { code: 'bad_frame', message: `the server sent a bad frame: ${describe(e)}` }, 'fault');
      return;
    }
    if (frame !== null) {
      switch (frame.type) {
        case 'welcome': this.onWelcome(c, frame); break;
        case 'changes': this.onChanges(c, frame); break;
        case 'snapshot': this.onSnapshot(c, frame); break;
        case 'ack': this.onAck(c, frame); break;
        case 'pong': this.onPong(c); break;
        case 'error': this.onError(c, frame); break;
      }
    }
    /* any frame shows the socket is alive: the pong deadline starts again */
    if (this.conn === c && c.pongTimer !== null) {
      this.clear(c.pongTimer);
      c.pongTimer = this.setTimer(() => this.halfOpen(c), this.pongTimeoutMs);
    }
  }

  /* A frame in the wrong place: the server broke the protocol. */
  private misplaced(c: Conn, what: string): void {
    this.drop(c, { code: 'bad_frame', message: `the server sent ${what}` }, 'fault');
  }

  /* ---------------------------------------------------------------- frames */

  private onWelcome(c: Conn, f: WelcomeFrame): void {
    if (c.state !== 'hello') return; /* a second welcome: ignored, as in net.c */
    const ok = this.attempt(c, 'applying the welcome', () => {
      this.store.observe(f.hlc);
      this.store.ensureTables(f.tables);
    });
    if (ok === null) return;
    c.state = 'live';
    c.granted = [...f.groups];
    this.clear(c.helloTimer);
    c.helloTimer = null;
    this.lastError = null;
    this.schedulePing(c);
    this.say({ type: 'status', connected: true, lastError: null });
    if (this.conn === c) this.attempt(c, 'reading the outbox', () => this.pushMore(c));
  }

  private onChanges(c: Conn, f: ChangesFrame): void {
    if (c.state !== 'live') return this.misplaced(c, 'changes before the welcome');
    if (c.snapOpen) return this.misplaced(c, 'changes in the middle of a snapshot');
    const r = this.attempt(c, 'applying changes', () => this.store.applyChanges(f));
    if (r !== null) this.sayChange(r.value);
  }

  private onSnapshot(c: Conn, f: SnapshotFrame): void {
    if (c.state !== 'live') return this.misplaced(c, 'a snapshot before the welcome');
    const r = this.attempt(c, 'applying a snapshot', () => {
      if (!c.snapOpen) {
        this.store.snapshotBegin(c.granted);
        c.snapOpen = true;
      }
      const done = this.store.snapshotFrame(f);
      if (done.done) c.snapOpen = false;
      return done.tables;
    });
    if (r !== null) this.sayChange(r.value);
  }

  private onAck(c: Conn, f: AckFrame): void {
    if (c.state !== 'live') return this.misplaced(c, 'an ack before the welcome');
    if (c.inflight > 0) c.inflight--; /* an ack nobody asked for changes nothing here (net.c) */
    const r = this.attempt(c, 'applying an ack', () => this.store.ack(f));
    if (r === null) return;
    const { rejected, tables } = r.value;
    if (rejected.length > 0) this.say({ type: 'rejected', rejections: rejected });
    this.sayChange(tables);
    if (this.conn === c) this.attempt(c, 'reading the outbox', () => this.pushMore(c));
  }

  private onPong(c: Conn): void {
    if (c.pongTimer === null) return; /* unasked: nothing to do */
    this.clear(c.pongTimer);
    c.pongTimer = null;
    this.schedulePing(c);
  }

  private onError(c: Conn, f: ErrorFrame): void {
    const err = { code: f.code, message: f.message };
    if (f.code === 'unauthorized') {
      this.mode = 'auth_failed';
      this.cancelRetry();
      this.drop(c, err, 'fault');
      return;
    }
    if (c.inflight > 0) {
      /* maybe the answer to a push, which then was not applied: resend everything */
      this.drop(c, err, 'fault');
      return;
    }
    this.lastError = err;
    this.say({ type: 'status', connected: c.state === 'live', lastError: err });
  }

  /*
   * After every frame applied: 'change' when visible rows changed, and
   * 'applied' always, since the cursor and the outbox may have moved without
   * any visible row changing (a client's own op confirmed, say).
   */
  private sayChange(tables: Set<string>): void {
    if (tables.size > 0) this.say({ type: 'change', tables: [...tables] });
    this.say({ type: 'applied' });
  }

  /* ---------------------------------------------------------------- pushing */

  /*
   * Sends push frames while fewer than maxInflight are unanswered and the
   * outbox has ops not sent on this connection.  Throws what the store
   * throws (the caller drops c), with sentSeq and inflight still true.
   */
  private pushMore(c: Conn): void {
    if (c.state !== 'live' || c.inflight >= this.maxInflight) return;
    const limit = (this.maxInflight - c.inflight) * this.maxBatchOps;
    const ops = this.store.pending(c.sentSeq, limit);
    let i = 0;
    while (this.conn === c && c.inflight < this.maxInflight && i < ops.length) {
      const batch: string[] = [];
      let bytes = 0;
      let last = c.sentSeq;
      for (; i < ops.length && batch.length < this.maxBatchOps; i++) {
        const op = ops[i] as OutboxOp;
        if (op.seq <= last) continue; /* not after what was sent: a store that ignored afterSeq */
        const text = encodeOp(op);
        const n = utf8Length(text) + 1;
        if (batch.length > 0 && bytes + n > this.maxBatchBytes) break; /* this op starts the next frame */
        batch.push(text);
        bytes += n;
        last = op.seq;
      }
      if (batch.length === 0) break;
      if (!this.send(c, pushFrameOf(batch))) return;
      c.inflight++;
      c.sentSeq = last;
    }
  }

  /* ---------------------------------------------------------------- liveness */

  private schedulePing(c: Conn): void {
    this.clear(c.pingTimer);
    c.pingTimer = this.setTimer(() => {
      c.pingTimer = null;
      if (this.conn === c) this.sendPing(c);
    }, this.pingIntervalMs);
  }

  private sendPing(c: Conn): void {
    c.pingTimer = null;
    if (!this.send(c, pingFrame())) return;
    c.pongTimer = this.setTimer(() => this.halfOpen(c), this.pongTimeoutMs);
  }

  private halfOpen(c: Conn): void {
    c.pongTimer = null;
    this.drop(c, {
      code: 'timeout',
      message: `no answer from ${this.url} within ${this.pongTimeoutMs} ms of a ping: the connection is half-open`,
    }, 'network');
  }
}
