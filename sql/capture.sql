--
-- capture: direct SQL writes to a tracked table become ops.
--
-- Expected: INSERT, UPDATE and DELETE made in SQL are recorded as ops of
-- client "server", an UPDATE carrying only the columns it changed and an
-- UPDATE that changes nothing recording nothing; a pushed op is recorded
-- once, never again by the trigger; a server write made after a client's op
-- wins over it, whatever the client's clock; changing a primary key is a
-- delete of the old row and an insert of the new one.  Rows a push removes
-- or changes indirectly (a cascading foreign key) are captured like any
-- other SQL write.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('ca_user', ARRAY['g1', 'g2']) AS tok \gset
CREATE TABLE ca_items (id int PRIMARY KEY, g text, title text, n int DEFAULT 0, note text);
SELECT synclog.track('ca_items', 'g');

-- The ops of this file since a cursor, with their clock's validity.
CREATE FUNCTION ca_ops(tbl text, since bigint DEFAULT 0) RETURNS TABLE (n bigint, client_id text, kind text, row_id text, fields jsonb, hlc_ok bool)
LANGUAGE sql AS $$
    SELECT row_number() OVER (ORDER BY o.local_id), o.client_id, o.kind, o.row_id, o.fields, o.hlc > 0
      FROM synclog.ops o WHERE o.table_name = tbl AND o.local_id > since ORDER BY o.local_id
$$;
SELECT coalesce(max(local_id), 0) AS l0 FROM synclog.ops \gset

-- INSERT: an op with the whole row.
INSERT INTO ca_items (id, g, title) VALUES (1, 'g1', 'one'), (2, 'g1', 'two'), (3, 'g2', 'three');
SELECT * FROM ca_ops('ca_items', :l0);
SELECT coalesce(max(local_id), 0) AS l1 FROM synclog.ops \gset

-- UPDATE: only the changed columns; an UPDATE that changes nothing, none.
UPDATE ca_items SET title = 'one!' WHERE id = 1;
UPDATE ca_items SET title = title, n = n WHERE id = 1;
UPDATE ca_items SET title = 'two', g = 'g1' WHERE id = 2;
UPDATE ca_items SET n = n + 1, note = 'bumped' WHERE g = 'g1';
UPDATE ca_items SET note = NULL WHERE id = 1;
UPDATE ca_items SET note = NULL WHERE id = 1;
SELECT * FROM ca_ops('ca_items', :l1);
SELECT coalesce(max(local_id), 0) AS l2 FROM synclog.ops \gset

-- DELETE: a delete op with no fields, and a tombstone refusing later ops.
DELETE FROM ca_items WHERE id = 3;
SELECT * FROM ca_ops('ca_items', :l2);
SELECT row_id, deleted FROM synclog.row_meta WHERE tbl = 'ca_items'::regclass ORDER BY row_id;
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "ca000000-0000-0000-0000-000000000001", "table": "ca_items", "row": "3", "kind": "upsert",
     "fields": {"title": "back?"}, "hlc": "0000000000010000"}]$$) r;
SELECT coalesce(max(local_id), 0) AS l3 FROM synclog.ops \gset

-- Pushes are recorded once: one op per pushed op, none by the trigger.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "ca000000-0000-0000-0000-000000000002", "table": "ca_items", "row": "4", "kind": "upsert",
     "fields": {"g": "g1", "title": "pushed"}, "hlc": "0000000000010000"},
    {"id": "ca000000-0000-0000-0000-000000000003", "table": "ca_items", "row": "4", "kind": "upsert",
     "fields": {"title": "pushed again"}, "hlc": "0000000000020000"},
    {"id": "ca000000-0000-0000-0000-000000000004", "table": "ca_items", "row": "4", "kind": "delete",
     "hlc": "0000000000030000"}]$$) r;
SELECT * FROM ca_ops('ca_items', :l3);
SELECT coalesce(max(local_id), 0) AS l4 FROM synclog.ops \gset

-- A server write after a client's op wins over it, even when the client's
-- clock is ahead of the server's: the server's clock moves past the
-- client's.  (The client's clock is taken 2 s past the server's current
-- clock, which earlier tests may have pushed ahead of the wall clock.)
SET synclog.max_clock_skew = '1h';
SELECT lpad(to_hex(('x' || (synclog.push(:'tok', 'c1', '[]') ->> 'hlc'))::bit(64)::bigint + (2000::bigint << 16)), 16, '0') AS ahead \gset
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', format($$[
    {"id": "ca000000-0000-0000-0000-000000000005", "table": "ca_items", "row": "1", "kind": "upsert",
     "fields": {"title": "client, ahead"}, "hlc": "%s"}]$$, :'ahead')::jsonb) r;
UPDATE ca_items SET title = 'server, after' WHERE id = 1;
SELECT o.client_id, o.fields, lpad(to_hex(o.hlc), 16, '0') > :'ahead' AS later_than_client
  FROM synclog.ops o WHERE o.table_name = 'ca_items' AND o.local_id > :l4 ORDER BY o.local_id;
SELECT clocks -> 'title' ->> 1 AS title_won_by, clocks -> 'title' ->> 0 > :'ahead' AS later_than_client
  FROM synclog.row_meta WHERE tbl = 'ca_items'::regclass AND row_id = '1';
-- The same client clock now loses the field to the server's write.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', format($$[
    {"id": "ca000000-0000-0000-0000-000000000006", "table": "ca_items", "row": "1", "kind": "upsert",
     "fields": {"title": "client again"}, "hlc": "%s"}]$$, :'ahead')::jsonb) r;
SELECT title FROM ca_items WHERE id = 1;
RESET synclog.max_clock_skew;
SELECT coalesce(max(local_id), 0) AS l5 FROM synclog.ops \gset

-- A primary key change is a delete of the old row and an insert of the new.
UPDATE ca_items SET id = 20 WHERE id = 2;
SELECT * FROM ca_ops('ca_items', :l5);
SELECT row_id, deleted FROM synclog.row_meta
 WHERE tbl = 'ca_items'::regclass AND row_id IN ('2', '20') ORDER BY row_id;
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes, r -> 'acked' AS acked
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "ca000000-0000-0000-0000-000000000007", "table": "ca_items", "row": "2", "kind": "upsert",
     "fields": {"title": "old key"}, "hlc": "0000000000090000"},
    {"id": "ca000000-0000-0000-0000-000000000008", "table": "ca_items", "row": "20", "kind": "upsert",
     "fields": {"note": "new key"}, "hlc": "0000000000090000"}]$$) r;
SELECT * FROM ca_items ORDER BY id;

-- The change stream carries the server's ops to clients like any other.
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT c->>'client_id' AS client_id, count(*) AS changes
  FROM jsonb_array_elements(synclog.changes(ARRAY['g1', 'g2'], :c0, 1000) -> 'changes') c
 GROUP BY 1 ORDER BY 1;

-- Rows a push changes indirectly are captured: a cascading delete into
-- another tracked table, and into the same table (a tree of rows).
CREATE TABLE ca_tree (id int PRIMARY KEY, g text, parent int REFERENCES ca_tree ON DELETE CASCADE);
CREATE TABLE ca_notes (id int PRIMARY KEY, g text, item int REFERENCES ca_tree ON DELETE CASCADE);
SELECT synclog.track('ca_tree', 'g');
SELECT synclog.track('ca_notes', 'g');
INSERT INTO ca_tree VALUES (1, 'g1', NULL), (2, 'g1', 1), (3, 'g1', 2);
INSERT INTO ca_notes VALUES (1, 'g1', 2);
SELECT coalesce(max(local_id), 0) AS l6 FROM synclog.ops \gset
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "ca000000-0000-0000-0000-000000000010", "table": "ca_tree", "row": "1", "kind": "delete",
     "hlc": "0000000000090000"}]$$) r;
SELECT count(*) AS tree_rows_left FROM ca_tree;
SELECT count(*) AS note_rows_left FROM ca_notes;
SELECT o.table_name, o.row_id, o.kind, o.client_id
  FROM synclog.ops o WHERE o.local_id > :l6 ORDER BY o.table_name, o.row_id;
SELECT m.tbl::text, m.row_id, m.deleted FROM synclog.row_meta m
 WHERE m.tbl IN ('ca_tree'::regclass, 'ca_notes'::regclass) ORDER BY 1, 2;

-- A partitioned table is refused with a clear error (writes routed to
-- partitions would bypass capture); nothing about it enters the op log.
CREATE TABLE ca_parted (id int PRIMARY KEY, g text, v text) PARTITION BY RANGE (id);
CREATE TABLE ca_parted_1 PARTITION OF ca_parted FOR VALUES FROM (0) TO (100);
SELECT synclog.track('ca_parted', 'g');
INSERT INTO ca_parted VALUES (2, 'g1', 'inserted');
SELECT count(*) AS parted_ops FROM synclog.ops WHERE table_name = 'ca_parted';

-- Moving a row to another group in SQL (only sync refuses that): a client
-- of the old group, replaying the changes, must end up without the row,
-- exactly as a snapshot of its group has it.
CREATE TABLE ca_moves (id int PRIMARY KEY, g text);
SELECT synclog.track('ca_moves', 'g');
SELECT synclog.wait_sequenced() AS m0 \gset
INSERT INTO ca_moves VALUES (1, 'g1'), (2, 'g1');
UPDATE ca_moves SET g = 'g2' WHERE id = 1;
SELECT synclog.wait_sequenced() > :m0 AS sequenced;
WITH ch AS (
    SELECT c->>'row' AS row_id, c->>'kind' AS kind, (c->>'seq')::bigint AS seq
      FROM jsonb_array_elements(synclog.changes(ARRAY['g1'], :m0, 100) -> 'changes') c
     WHERE c->>'table' = 'ca_moves'),
last AS (SELECT DISTINCT ON (row_id) row_id, kind FROM ch ORDER BY row_id, seq DESC)
SELECT (SELECT array_agg(row_id ORDER BY row_id) FROM last WHERE kind = 'upsert') AS g1_replayed,
       (SELECT array_agg(s->>'row' ORDER BY s->>'row') FROM jsonb_array_elements(synclog.snapshot(ARRAY['g1']) -> 'rows') s
         WHERE s->>'table' = 'ca_moves') AS g1_snapshot;
SELECT s->>'row' AS g2_row, s->'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['g2']) -> 'rows') s WHERE s->>'table' = 'ca_moves';

-- Clean up.
SELECT synclog.untrack('ca_moves');
DROP TABLE ca_moves;
SELECT synclog.untrack('ca_items');
SELECT synclog.untrack('ca_notes');
SELECT synclog.untrack('ca_tree');
DROP TABLE ca_items, ca_notes, ca_tree, ca_parted;
DROP FUNCTION ca_ops(text, bigint);
SELECT synclog.revoke_token(:'tok');
