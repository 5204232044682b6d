/*
 * web/src/rpc.ts: the messages between a page and its worker (postMessage)
 * and between the workers of one origin's tabs (BroadcastChannel
 * "synclog:<name>").  See web/DESIGN.md "One owner tab".
 *
 * A page talks only to its own worker.  A worker is either the owner (it
 * holds the Web Lock, the database and the socket) or a follower (it
 * forwards its page's requests to the owner and relays the owner's events).
 */

import type { Fields, Rejection, Status } from './types.js';

export type Method =
  | { method: 'put'; args: [table: string, row: string, fields: Fields, opId: string] }
  | { method: 'delete'; args: [table: string, row: string, opId: string] }
  | { method: 'query'; args: [sql: string, params: unknown[]] }
  | { method: 'tablesRead'; args: [sql: string] }
  | { method: 'status'; args: [] }
  | { method: 'setOnline'; args: [online: boolean] };

export type MethodName = Method['method'];

/* An error as it crosses a message boundary (Error objects lose their class). */
export interface WireError {
  name: string;
  code: string;
  message: string;
}

export type Event =
  | { event: 'status'; payload: Omit<Status, 'owner'> }
  | { event: 'change'; payload: { tables: string[]; source: 'local' | 'remote' } }
  | { event: 'rejected'; payload: Rejection };

export interface OpenParams {
  url: string;
  token: string;
  groups: string[];
  name: string;
}

/* Page → its worker. */
export type PageToWorker =
  | { kind: 'open'; params: OpenParams }
  | ({ kind: 'req'; id: number } & Method)
  | { kind: 'close' };

/* Worker → its page. */
export type WorkerToPage =
  | { kind: 'ready'; owner: boolean }
  | { kind: 'fatal'; error: WireError }
  | { kind: 'res'; id: number; ok: true; value: unknown }
  | { kind: 'res'; id: number; ok: false; error: WireError }
  | ({ kind: 'event' } & Event)
  | { kind: 'role'; owner: boolean }
  | { kind: 'closed' };

/* Between the workers of one name, on the BroadcastChannel. */
export type Peer =
  | ({ kind: 'req'; from: string; id: number } & Method)
  | { kind: 'res'; to: string; id: number; ok: true; value: unknown }
  | { kind: 'res'; to: string; id: number; ok: false; error: WireError }
  | ({ kind: 'event' } & Event)
  | { kind: 'owner'; owner: string }        /* "I hold the database now" */
  | { kind: 'who'; from: string }           /* "who is the owner?" */
  | { kind: 'fatal'; error: WireError };    /* the owner cannot open the database */

export function wireError(e: unknown, fallbackCode = 'internal'): WireError {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, code: typeof code === 'string' ? code : fallbackCode, message: e.message };
  }
  return { name: 'Error', code: fallbackCode, message: String(e) };
}
