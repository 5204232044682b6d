--
-- idempotency: an op id makes an op happen at most once.
--
-- Expected: pushing an op again (in the same batch, in a later batch, after
-- its row was deleted, with its id spelled in another case or without
-- hyphens) is acked and has no effect: the row is unchanged and the change
-- stream holds one change per op.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('id_user', ARRAY['g1']) AS tok \gset
CREATE TABLE id_items (id int PRIMARY KEY, g text, title text, n int DEFAULT 0);
SELECT synclog.track('id_items', 'g');

-- Count of log entries per op id of this file.
CREATE FUNCTION id_log() RETURNS TABLE (op_id uuid, entries bigint)
LANGUAGE sql AS $$
    SELECT o.op_id, count(*) FROM synclog.ops o WHERE o.table_name = 'id_items' GROUP BY o.op_id ORDER BY o.op_id
$$;

-- The same op twice in one batch: acked twice, applied once.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1d000000-0000-0000-0000-000000000001", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"g": "g1", "title": "first", "n": 1}, "hlc": "0000000000010000"},
    {"id": "1d000000-0000-0000-0000-000000000001", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"g": "g1", "title": "first", "n": 1}, "hlc": "0000000000010000"}
  ]$$) r;
SELECT * FROM id_items ORDER BY id;
SELECT * FROM id_log();

-- The same op id in a later batch, even carrying other content (a retry
-- after a lost ack): acked, nothing changes, no second change.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1d000000-0000-0000-0000-000000000001", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"g": "g1", "title": "first", "n": 1}, "hlc": "0000000000010000"},
    {"id": "1d000000-0000-0000-0000-000000000001", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"title": "changed?", "n": 100}, "hlc": "0000000000090000"}
  ]$$) r;
SELECT * FROM id_items ORDER BY id;
SELECT * FROM id_log();

-- An op id is the same op in any case and with or without hyphens.
-- (Which spelling the ack carries is left open: compared here without case and hyphens.)
SELECT (SELECT array_agg(replace(lower(a), '-', '')) FROM jsonb_array_elements_text(r -> 'acked') a) AS acked,
       r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1D000000-0000-0000-0000-000000000001", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"n": 2}, "hlc": "0000000000020000"}
  ]$$) r;
SELECT (SELECT array_agg(replace(lower(a), '-', '')) FROM jsonb_array_elements_text(r -> 'acked') a) AS acked,
       r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1d000000000000000000000000000001", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"n": 3}, "hlc": "0000000000020000"}
  ]$$) r;
-- a new op first spelled in capitals, then resent in lower case in the same batch
SELECT jsonb_array_length(r -> 'acked') AS acked, r -> 'rejected' AS rejected,
       (SELECT array_agg(DISTINCT replace(lower(a), '-', '')) FROM jsonb_array_elements_text(r -> 'acked') a) AS ids
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1D000000-0000-0000-0000-0000000000AB", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"title": "second"}, "hlc": "0000000000030000"},
    {"id": "1d000000-0000-0000-0000-0000000000ab", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"title": "second"}, "hlc": "0000000000030000"},
    {"id": "1d0000000000000000000000000000ab", "table": "id_items", "row": "1", "kind": "upsert",
     "fields": {"title": "second"}, "hlc": "0000000000030000"}
  ]$$) r;
SELECT * FROM id_items ORDER BY id;
SELECT * FROM id_log();

-- A rejected op is not remembered: sent again once it can apply, it applies.
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1d000000-0000-0000-0000-000000000003", "table": "id_items", "row": "2", "kind": "upsert",
     "fields": {"g": "g1", "n": "two"}, "hlc": "0000000000010000"}
  ]$$) r;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1d000000-0000-0000-0000-000000000003", "table": "id_items", "row": "2", "kind": "upsert",
     "fields": {"g": "g1", "n": 2}, "hlc": "0000000000010000"}
  ]$$) r;

-- An op resent after its row was deleted is still acked (not row_deleted),
-- and so is the delete itself.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1d000000-0000-0000-0000-000000000004", "table": "id_items", "row": "2", "kind": "delete",
     "hlc": "0000000000020000"}
  ]$$) r;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "1d000000-0000-0000-0000-000000000003", "table": "id_items", "row": "2", "kind": "upsert",
     "fields": {"g": "g1", "n": 2}, "hlc": "0000000000010000"},
    {"id": "1d000000-0000-0000-0000-000000000004", "table": "id_items", "row": "2", "kind": "delete",
     "hlc": "0000000000020000"}
  ]$$) r;
SELECT * FROM id_items ORDER BY id;
SELECT * FROM id_log();

-- The change stream holds exactly one change per applied op.
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT (c->>'seq')::bigint - :c0 AS seq, c->>'op_id' AS op_id, c->>'row' AS row, c->>'kind' AS kind,
       c->'fields' AS fields
  FROM jsonb_array_elements(synclog.changes(ARRAY['g1'], :c0, 100) -> 'changes') c;

-- Clean up.
SELECT synclog.untrack('id_items');
DROP TABLE id_items;
DROP FUNCTION id_log();
SELECT synclog.revoke_token(:'tok');
