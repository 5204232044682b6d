--
-- push_basic: the happy path of synclog.push.
--
-- Expected: a new row is inserted with the fields given and defaults for the
-- rest; a later op updates only its fields; JSON values of every kind land in
-- columns of the matching SQL type (a JSON array in an array column, as the
-- change stream itself sends it); the reply is {"acked", "rejected", "hlc"}.
--
\set VERBOSITY terse
SET timezone = 'UTC';
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('pb_user', ARRAY['team1']) AS tok \gset

CREATE TABLE pb_items (
    id    uuid PRIMARY KEY,
    team  text NOT NULL,
    title text,
    n     int DEFAULT 7,
    done  bool DEFAULT false,
    amt   numeric,
    meta  jsonb,
    tags  text[],
    due   timestamptz,
    note  text DEFAULT 'none'
);
SELECT synclog.track('pb_items', 'team');

-- The reply's shape, for an empty batch.
SELECT r - 'hlc' AS reply, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r) k) AS keys
  FROM synclog.push(:'tok', 'pb-client', '[]') r;
SELECT (r ->> 'hlc') ~ '^[0-9a-f]{16}$' AS hlc_ok, jsonb_typeof(r -> 'acked') AS acked,
       jsonb_typeof(r -> 'rejected') AS rejected
  FROM synclog.push(:'tok', 'pb-client', '[]') r;

-- A new row: the fields given, defaults for the rest.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected, (r ->> 'hlc') ~ '^[0-9a-f]{16}$' AS hlc_ok,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r) k) AS keys
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "b0000000-0000-0000-0000-000000000001", "table": "pb_items",
     "row": "10000000-0000-0000-0000-000000000001", "kind": "upsert",
     "fields": {"team": "team1", "title": "first"}, "hlc": "0000000000010000"}
  ]$$) r;
SELECT * FROM pb_items ORDER BY id;

-- The server's clock moved past the op's: the reply's hlc is later.
SELECT (r ->> 'hlc') > '0000000000010000' AS reply_clock_later
  FROM synclog.push(:'tok', 'pb-client', '[]') r;

-- An update of the existing row touches only the fields given.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "b0000000-0000-0000-0000-000000000002", "table": "pb_items",
     "row": "10000000-0000-0000-0000-000000000001", "kind": "upsert",
     "fields": {"title": "renamed", "n": 8}, "hlc": "0000000000020000"}
  ]$$) r;
SELECT * FROM pb_items ORDER BY id;

-- JSON value types into int, bool, numeric, jsonb, text[], timestamptz columns,
-- and JSON null into a nullable column.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "b0000000-0000-0000-0000-000000000003", "table": "pb_items",
     "row": "10000000-0000-0000-0000-000000000002", "kind": "upsert",
     "fields": {"team": "team1", "title": null, "n": 42, "done": true, "amt": 12.345,
                "meta": {"a": [1, {"b": null}], "s": "x"}, "tags": ["x", "y z"],
                "due": "2024-01-02T03:04:05.123+02:00", "note": "given"},
     "hlc": "0000000000010000"}
  ]$$) r;
SELECT * FROM pb_items WHERE id = '10000000-0000-0000-0000-000000000002';
SELECT pg_typeof(meta) AS meta_type, meta -> 'a' -> 1 AS nested, tags[2] AS second_tag,
       amt = 12.345 AS amt_exact
  FROM pb_items WHERE id = '10000000-0000-0000-0000-000000000002';
-- Numbers and booleans given as strings are read by the column's type too;
-- a JSON string into a jsonb column is a JSON string.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "b0000000-0000-0000-0000-000000000004", "table": "pb_items",
     "row": "10000000-0000-0000-0000-000000000002", "kind": "upsert",
     "fields": {"n": "43", "done": "false", "amt": "-0.5", "meta": "just text",
                "tags": "{p,q}", "title": 17},
     "hlc": "0000000000020000"}
  ]$$) r;
SELECT title, n, done, amt, meta, jsonb_typeof(meta) AS meta_kind, tags
  FROM pb_items WHERE id = '10000000-0000-0000-0000-000000000002';

-- The primary key may be given in fields when it equals the row (in any
-- spelling of the same value); the row may be spelled any way too.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "b0000000-0000-0000-0000-000000000005", "table": "pb_items",
     "row": "10000000-0000-0000-0000-000000000003", "kind": "upsert",
     "fields": {"id": "10000000-0000-0000-0000-000000000003", "team": "team1", "title": "pk given"},
     "hlc": "0000000000010000"},
    {"id": "b0000000-0000-0000-0000-000000000006", "table": "pb_items",
     "row": "10000000-0000-0000-0000-000000000003", "kind": "upsert",
     "fields": {"id": "{10000000000000000000000000000003}", "n": 99},
     "hlc": "0000000000020000"},
    {"id": "b0000000-0000-0000-0000-000000000007", "table": "pb_items",
     "row": "1000000000000000000000000000000A", "kind": "upsert",
     "fields": {"team": "team1", "title": "upper-case row"}, "hlc": "0000000000010000"}
  ]$$) r;
SELECT id, title, n FROM pb_items WHERE id IN ('10000000-0000-0000-0000-000000000003',
                                             '10000000-0000-0000-0000-00000000000a') ORDER BY id;
SELECT count(*) AS rows FROM pb_items;

-- The change stream: a new row carries the row as inserted, an update only
-- the fields it wrote; rows are named by the key's canonical text.
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT (c->>'seq')::bigint - :c0 AS seq, c->>'op_id' AS op_id, c->>'client_id' AS client_id,
       c->>'kind' AS kind, c->>'row' AS row, c->>'hlc' AS hlc, c->'fields' AS fields
  FROM jsonb_array_elements(synclog.changes(ARRAY['team1'], :c0, 100) -> 'changes') c;

-- Awkward column names: mixed case with a space, a keyword, and a name the
-- extension might use internally.  Values and changes keep them intact.
CREATE TABLE pb_odd (id int PRIMARY KEY, team text, "Due Date" text, "select" text, synclog_row text);
SELECT synclog.track('pb_odd', 'team');
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "b0000000-0000-0000-0000-000000000011", "table": "pb_odd", "row": "1", "kind": "upsert",
     "fields": {"team": "team1", "Due Date": "soon", "select": "s1", "synclog_row": "r1"}, "hlc": "0000000000010000"},
    {"id": "b0000000-0000-0000-0000-000000000012", "table": "pb_odd", "row": "1", "kind": "upsert",
     "fields": {"Due Date": "later", "synclog_row": "r2"}, "hlc": "0000000000020000"}
  ]$$) r;
SELECT * FROM pb_odd;
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT c->>'op_id' AS op_id, c->'fields' AS fields
  FROM jsonb_array_elements(synclog.changes(ARRAY['team1'], :c0, 100) -> 'changes') c
 WHERE c->>'table' = 'pb_odd';

-- A batch's op log rows are written together at its end (one INSERT): they
-- keep the batch's order (local_id, then seq), ops on one row included, and
-- each is logged once.  Then the same with an op the table refuses (n is an
-- int): the batch is applied again op by op, the bad op alone is refused,
-- and the others are logged once, in order.
CREATE TABLE pb_order (id int PRIMARY KEY, team text, n int);
SELECT synclog.track('pb_order', 'team');
SELECT synclog.cursor() AS c1 \gset
SELECT jsonb_array_length(r -> 'acked') AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "c0000000-0000-0000-0000-000000000001", "table": "pb_order", "row": "1", "kind": "upsert", "fields": {"team": "team1", "n": 1}, "hlc": "0000000000010000"},
    {"id": "c0000000-0000-0000-0000-000000000002", "table": "pb_order", "row": "2", "kind": "upsert", "fields": {"team": "team1", "n": 2}, "hlc": "0000000000010000"},
    {"id": "c0000000-0000-0000-0000-000000000003", "table": "pb_order", "row": "1", "kind": "upsert", "fields": {"n": 3}, "hlc": "0000000000020000"},
    {"id": "c0000000-0000-0000-0000-000000000004", "table": "pb_order", "row": "2", "kind": "delete", "hlc": "0000000000020000"},
    {"id": "c0000000-0000-0000-0000-000000000005", "table": "pb_order", "row": "1", "kind": "upsert", "fields": {"n": 5}, "hlc": "0000000000030000"}
  ]$$) r;
SELECT jsonb_array_length(r -> 'acked') AS acked, r #>> '{rejected,0,id}' AS rejected_id, r #>> '{rejected,0,code}' AS code
  FROM synclog.push(:'tok', 'pb-client', $$[
    {"id": "c0000000-0000-0000-0000-000000000006", "table": "pb_order", "row": "3", "kind": "upsert", "fields": {"team": "team1", "n": 6}, "hlc": "0000000000040000"},
    {"id": "c0000000-0000-0000-0000-000000000007", "table": "pb_order", "row": "3", "kind": "upsert", "fields": {"n": "seven"}, "hlc": "0000000000050000"},
    {"id": "c0000000-0000-0000-0000-000000000008", "table": "pb_order", "row": "1", "kind": "upsert", "fields": {"n": 8}, "hlc": "0000000000060000"}
  ]$$) r;
SELECT synclog.wait_sequenced() > :c1 AS sequenced;
SELECT right(op_id::text, 2) AS op, row_id, kind, fields,
       local_id > lag(local_id) OVER (ORDER BY seq) AS local_id_rises
  FROM synclog.ops WHERE table_name = 'pb_order' ORDER BY seq;
SELECT * FROM pb_order ORDER BY id;
SELECT synclog.untrack('pb_order');
DROP TABLE pb_order;

-- Clean up.
SELECT synclog.untrack('pb_odd');
SELECT synclog.untrack('pb_items');
DROP TABLE pb_items, pb_odd;
SELECT synclog.revoke_token(:'tok');
