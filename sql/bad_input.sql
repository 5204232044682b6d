--
-- bad_input: what push does with arguments and ops it cannot use.
--
-- Expected: bad arguments raise an ERROR with a clear message; a bad op in
-- a batch is refused alone (invalid_op, invalid_value, unknown_table,
-- unknown_column) and never stops the valid ops next to it nor fails the
-- whole batch; names from ops never reach SQL text (no injection), values
-- of any shape and depth are taken as data.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('bi_user', ARRAY['g1']) AS tok \gset
CREATE TABLE bi_items (
    id    uuid PRIMARY KEY,
    g     text,
    title text,
    n     int,
    small smallint,
    big   bigint,
    meta  jsonb,
    ref   uuid,
    code  text UNIQUE
);
SELECT synclog.track('bi_items', 'g');
CREATE TABLE bi_notes (id text PRIMARY KEY, g text, body text);
SELECT synclog.track('bi_notes', 'g');

CREATE FUNCTION bi_show(r jsonb) RETURNS TABLE (outcome text, id text, code text, message text)
LANGUAGE sql AS $$
    SELECT 'acked', a, NULL, NULL FROM jsonb_array_elements_text(r -> 'acked') a
    UNION ALL
    SELECT 'rejected', x ->> 'id', x ->> 'code', x ->> 'message' FROM jsonb_array_elements(r -> 'rejected') x
$$;

-- Argument errors.
SELECT synclog.push(NULL, 'c1', '[]');
SELECT synclog.push(:'tok', NULL, '[]');
SELECT synclog.push(:'tok', 'c1', NULL);
SELECT synclog.push(:'tok', '', '[]');
SELECT synclog.push(:'tok', repeat('c', 65), '[]');
SELECT synclog.push(:'tok', repeat('é', 33), '[]');
SELECT synclog.push(:'tok', 'server', '[]');
SELECT synclog.push(:'tok', '{}', '{}');
SELECT synclog.push(:'tok', 'c1', '{}');
SELECT synclog.push(:'tok', 'c1', '{"ops": []}');
SELECT synclog.push(:'tok', 'c1', '"[]"');
SELECT synclog.push(:'tok', 'c1', '42');
SELECT synclog.push(:'tok', 'c1', 'null');
SELECT synclog.push(:'tok', 'c1', 'true');
-- the longest client_id is fine, and so is one that merely contains "server"
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', repeat('c', 64), '[]') r;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', repeat('é', 32), '[]') r;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', 'Server', '[]') r;

-- Garbage elements in the ops array are each refused invalid_op; the valid
-- ops around them apply.
SELECT * FROM bi_show(synclog.push(:'tok', 'c1', $$[
  1, -2.5, "op", "", null, true, false, [], [[]], [{"id": "bad00000-0000-0000-0000-000000000099"}], {},
  {"id": "bad00000-0000-0000-0000-000000000001", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001",
   "kind": "upsert", "fields": {"g": "g1", "title": "valid one"}, "hlc": "0000000000010000"},
  {"id": {"nested": "object"}, "table": "bi_items"},
  {"id": ["bad00000-0000-0000-0000-000000000002"], "table": "bi_items"},
  {"id": "bad00000-0000-0000-0000-000000000003", "table": ["bi_items"], "row": "x", "kind": "upsert", "fields": {}, "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000004", "table": "bi_items", "row": {"id": 1}, "kind": "upsert", "fields": {}, "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000005", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": ["upsert"], "fields": {}, "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000006", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert", "fields": "title=x", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000007", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert", "fields": {}, "hlc": ["0000000000010000"]},
  {"id": "bad00000-0000-0000-0000-000000000008", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000002",
   "kind": "upsert", "fields": {"g": "g1", "title": "valid two"}, "hlc": "0000000000010000"}
]$$));
SELECT id, title FROM bi_items ORDER BY id;

-- Deeply nested values are data: into jsonb as JSON, into text as JSON text.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', jsonb_build_array(jsonb_build_object(
    'id', 'bad00000-0000-0000-0000-000000000010', 'table', 'bi_items',
    'row', 'b1000000-0000-0000-0000-000000000003', 'kind', 'upsert', 'hlc', '0000000000010000',
    'fields', jsonb_build_object(
        'g', 'g1',
        'meta', (repeat('{"a":[', 200) || '"deep"' || repeat(']}', 200))::jsonb,
        'title', (repeat('[', 300) || '1' || repeat(']', 300))::jsonb)))) r;
SELECT meta #>> (SELECT array_agg(p) FROM (SELECT unnest(ARRAY['a', '0']) p FROM generate_series(1, 200)) s) AS deepest,
       length(title) AS title_length, left(title, 5) AS title_starts
  FROM bi_items WHERE id = 'b1000000-0000-0000-0000-000000000003';

-- Names from ops are looked up, never pasted into SQL: quotes, semicolons,
-- backslashes, non-ASCII and long names are just unknown.
SELECT * FROM bi_show(synclog.push(:'tok', 'c1', $$[
  {"id": "bad00000-0000-0000-0000-000000000020", "table": "bi_items\"; DROP TABLE bi_items; --", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000021", "table": "bi_items'; DROP TABLE bi_items; --", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000022", "table": "bi\\items", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000023", "table": "bï_items", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000024", "table": "BI_ITEMS", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000025", "table": "public.bi_items", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000026", "table": "\"bi_items\"", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000027", "table": "bi_items ", "row": "1", "kind": "delete", "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000030", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"title\" = 'x'; DROP TABLE bi_items; --": "x"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000031", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"ti'tle": "x"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000032", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"t\\itle": "x"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000033", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"tïtle": "x"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000034", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"\"title\"": "x"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000035", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"": "x"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000036", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"title": "kept; DROP TABLE bi_items; --'\""}, "hlc": "0000000000020000"}
]$$));
SELECT to_regclass('bi_items') IS NOT NULL AS bi_items_exists, count(*) AS rows FROM bi_items;
SELECT title FROM bi_items WHERE id = 'b1000000-0000-0000-0000-000000000001';
-- Long names: a 63-byte column exists; 70 bytes sharing its first 63 is
-- another, unknown name; a table name of 1000 bytes is unknown.
ALTER TABLE bi_items ADD COLUMN c23456789012345678901234567890123456789012345678901234567890123 text;
SELECT x ->> 'code' AS code, length(x ->> 'message') > 70 AS names_whole_column
  FROM synclog.push(:'tok', 'c1', jsonb_build_array(
    jsonb_build_object('id', 'bad00000-0000-0000-0000-000000000040', 'table', 'bi_items',
        'row', 'b1000000-0000-0000-0000-000000000001', 'kind', 'upsert', 'hlc', '0000000000020000',
        'fields', jsonb_build_object('c23456789012345678901234567890123456789012345678901234567890123' || '4567890', 'x')),
    jsonb_build_object('id', 'bad00000-0000-0000-0000-000000000041', 'table', repeat('t', 1000),
        'row', '1', 'kind', 'delete', 'hlc', '0000000000020000'))) r,
       jsonb_array_elements(r -> 'rejected') x;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', jsonb_build_array(
    jsonb_build_object('id', 'bad00000-0000-0000-0000-000000000042', 'table', 'bi_items',
        'row', 'b1000000-0000-0000-0000-000000000001', 'kind', 'upsert', 'hlc', '0000000000020000',
        'fields', jsonb_build_object('c23456789012345678901234567890123456789012345678901234567890123', 'long name')))) r;
SELECT c23456789012345678901234567890123456789012345678901234567890123 AS long_column
  FROM bi_items WHERE id = 'b1000000-0000-0000-0000-000000000001';

-- A text key takes any text as a row id, quotes and all, as data.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
  {"id": "bad00000-0000-0000-0000-000000000050", "table": "bi_notes", "row": "x'); DROP TABLE bi_notes; --",
   "kind": "upsert", "fields": {"g": "g1", "body": "quoted"}, "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000051", "table": "bi_notes", "row": "ünïcödé \\ \"",
   "kind": "upsert", "fields": {"g": "g1", "body": "unicode"}, "hlc": "0000000000010000"}]$$) r;
SELECT id, body FROM bi_notes ORDER BY body;

-- Numbers too large for the column: invalid_value, naming the column.
SELECT * FROM bi_show(synclog.push(:'tok', 'c1', $$[
  {"id": "bad00000-0000-0000-0000-000000000060", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"n": 2147483648}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000061", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"n": -2147483649}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000062", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"n": 1e30}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000063", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"small": 32768}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000064", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"big": 9223372036854775808}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000065", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"n": 2147483647, "small": -32768, "big": -9223372036854775808}, "hlc": "0000000000020000"}
]$$));
SELECT n, small, big FROM bi_items WHERE id = 'b1000000-0000-0000-0000-000000000001';

-- Invalid UUIDs: as the row of a uuid key, in the key field, in a uuid column.
SELECT * FROM bi_show(synclog.push(:'tok', 'c1', $$[
  {"id": "bad00000-0000-0000-0000-000000000070", "table": "bi_items", "row": "not-a-uuid", "kind": "upsert",
   "fields": {"g": "g1"}, "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000071", "table": "bi_items", "row": "b1000000-0000-0000-0000-00000000001", "kind": "upsert",
   "fields": {"g": "g1"}, "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000072", "table": "bi_items", "row": "g1000000-0000-0000-0000-000000000001", "kind": "delete",
   "hlc": "0000000000010000"},
  {"id": "bad00000-0000-0000-0000-000000000073", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"id": "b1000000-0000-0000-0000-00000000000z"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000074", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"ref": "b1000000-0000-0000-0000-0000000000011"}, "hlc": "0000000000020000"},
  {"id": "bad00000-0000-0000-0000-000000000075", "table": "bi_items", "row": "b1000000-0000-0000-0000-000000000001", "kind": "upsert",
   "fields": {"ref": 12345}, "hlc": "0000000000020000"}
]$$));
SELECT count(*) AS rows FROM bi_items;

-- Values too large for an index refuse their op alone; they must not fail
-- the batch (the client would resend it forever).
SELECT x.code IN ('invalid_op', 'invalid_value') AS long_row_refused, r -> 'acked' AS acked
  FROM synclog.push(:'tok', 'c1', jsonb_build_array(
    jsonb_build_object('id', 'bad00000-0000-0000-0000-000000000080', 'table', 'bi_notes',
        'row', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i),
        'kind', 'upsert', 'fields', jsonb_build_object('g', 'g1'), 'hlc', '0000000000010000'),
    jsonb_build_object('id', 'bad00000-0000-0000-0000-000000000081', 'table', 'bi_notes',
        'row', 'short', 'kind', 'upsert', 'fields', jsonb_build_object('g', 'g1', 'body', 'next to a long row'),
        'hlc', '0000000000010000'))) r,
       LATERAL (SELECT x ->> 'code' AS code FROM jsonb_array_elements(r -> 'rejected') x) x;
SELECT x.code IN ('constraint_violation', 'invalid_value') AS long_value_refused, r -> 'acked' AS acked
  FROM synclog.push(:'tok', 'c1', jsonb_build_array(
    jsonb_build_object('id', 'bad00000-0000-0000-0000-000000000082', 'table', 'bi_items',
        'row', 'b1000000-0000-0000-0000-000000000001', 'kind', 'upsert', 'hlc', '0000000000030000',
        'fields', jsonb_build_object('code', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i))),
    jsonb_build_object('id', 'bad00000-0000-0000-0000-000000000083', 'table', 'bi_items',
        'row', 'b1000000-0000-0000-0000-000000000002', 'kind', 'upsert', 'hlc', '0000000000030000',
        'fields', jsonb_build_object('title', 'next to a long value')))) r,
       LATERAL (SELECT x ->> 'code' AS code FROM jsonb_array_elements(r -> 'rejected') x) x;
SELECT body FROM bi_notes WHERE id = 'short';
SELECT title FROM bi_items WHERE id = 'b1000000-0000-0000-0000-000000000002';

-- Only the valid ops above reached the change stream.
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT c->>'op_id' AS op_id, c->>'table' AS tbl
  FROM jsonb_array_elements(synclog.changes(ARRAY['g1'], :c0, 100) -> 'changes') c
 ORDER BY (c->>'seq')::bigint;

-- Clean up.
SELECT synclog.untrack('bi_items');
SELECT synclog.untrack('bi_notes');
DROP TABLE bi_items, bi_notes;
DROP FUNCTION bi_show(jsonb);
SELECT synclog.revoke_token(:'tok');
