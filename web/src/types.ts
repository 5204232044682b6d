/*
 * web/src/types.ts: the shapes every module of the browser client shares —
 * JSON values, the server frames (as src/protocol.ts hands them on, already
 * validated), the tables of `welcome.tables`, pending ops, refusals and the
 * status the API reports.  No code.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Fields = Record<string, Json>;

/* A tracked table as `welcome.tables` describes it. */
export interface TableSpec {
  pk: string;
  group: string;
  columns: Record<string, string>; /* column → SQL type, e.g. "text", "integer", "jsonb" */
}
export type Tables = Record<string, TableSpec>;

/* A field's clock as snapshots carry it: [16 hex digits, client_id]. */
export type FieldClock = [string, string];

export type OpKind = 'upsert' | 'delete';

/* One op of the outbox, in outbox order (seq), as `push` sends it. */
export interface OutboxOp {
  seq: number;
  id: string;
  table: string;
  row: string;
  kind: OpKind;
  fields: Fields; /* {} for a delete */
  hlc: string;
}

/* Server frames, validated by protocol.ts. */
export interface WelcomeFrame {
  type: 'welcome';
  cursor: number;
  hlc: string;
  groups: string[];
  tables: Tables;
}

export interface Change {
  seq: number;
  op_id: string;
  client_id: string;
  table: string;
  row: string;
  group?: string;
  kind: OpKind;
  fields: Fields;
  hlc: string;
}

export interface ChangesFrame {
  type: 'changes';
  changes: Change[];
  cursor: number;
}

export interface SnapshotRow {
  table: string;
  row: string;
  fields: Fields;
  clocks: Record<string, FieldClock>;
}

export interface SnapshotFrame {
  type: 'snapshot';
  rows: SnapshotRow[];
  cursor: number;
  done: boolean;
}

export interface AckFrame {
  type: 'ack';
  acked: string[];
  rejected: { id: string; code: string; message: string }[];
  hlc: string;
}

export interface PongFrame {
  type: 'pong';
  hlc: string;
}

export interface ErrorFrame {
  type: 'error';
  code: string;
  message: string;
}

export type ServerFrame = WelcomeFrame | ChangesFrame | SnapshotFrame | AckFrame | PongFrame | ErrorFrame;

/* A refused op, as on('rejected') reports it. */
export interface Rejection {
  id: string;
  table: string;
  row: string;
  code: string;
  message: string;
}

/* What on('status') reports. */
export interface Status {
  connected: boolean;      /* welcomed on a live connection */
  pending: number;         /* ops in the outbox, acked or not */
  cursor: number;
  owner: boolean;          /* this tab's worker holds the database */
  lastError: { code: string; message: string } | null;
}
