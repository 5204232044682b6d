--
-- track: synclog.track / synclog.untrack / synclog.tables().
--
-- Expected: every bad call raises an ERROR and registers nothing; a tracked
-- table's existing rows enter the change stream as server inserts; a tracked
-- table refuses TRUNCATE and accepts it again once untracked.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('tr_user', ARRAY['ga', 'gb']) AS tok \gset

-- Tables that cannot be tracked.
CREATE TABLE tr_nopk (id int, g text);
SELECT synclog.track('tr_nopk', 'g');
CREATE TABLE tr_comp (a int, b int, g text, PRIMARY KEY (a, b));
SELECT synclog.track('tr_comp', 'g');
CREATE TABLE tr_items (id int PRIMARY KEY, g text NOT NULL, title text, n int DEFAULT 3);
SELECT synclog.track('tr_items', 'nope');
-- a dropped column does not count as a group column
ALTER TABLE tr_items ADD COLUMN gone text;
ALTER TABLE tr_items DROP COLUMN gone;
SELECT synclog.track('tr_items', 'gone');
-- system columns are not group columns either
SELECT synclog.track('tr_items', 'ctid');
CREATE VIEW tr_view AS SELECT * FROM tr_items;
SELECT synclog.track('tr_view', 'g');
CREATE SEQUENCE tr_seq;
SELECT synclog.track('tr_seq', 'g');
CREATE MATERIALIZED VIEW tr_mview AS SELECT 1 AS id, 'ga'::text AS g;
SELECT synclog.track('tr_mview', 'g');
SELECT synclog.track('tr_no_such_table', 'g');
SELECT synclog.track(NULL, 'g');
SELECT synclog.track('tr_items', NULL);
SELECT synclog.untrack(NULL);
SELECT synclog.untrack('tr_items');
-- none of the failures registered anything or left a trigger behind
SELECT synclog.tables() ?| ARRAY['tr_nopk', 'tr_comp', 'tr_items', 'tr_view', 'tr_seq', 'tr_mview'] AS any_tracked;
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid IN ('tr_nopk'::regclass, 'tr_comp'::regclass, 'tr_items'::regclass);

-- Success: rows already in the table are captured as server inserts.
INSERT INTO tr_items (id, g, title) VALUES (1, 'ga', 'first'), (2, 'gb', 'second');
SELECT synclog.track('tr_items', 'g');
SELECT synclog.tables() -> 'tr_items' AS tr_items;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'tr_items'::regclass ORDER BY tgname;
SELECT synclog.wait_sequenced() - :c0 AS new_changes;
SELECT (c->>'seq')::bigint - :c0 AS seq, c->>'client_id' AS client_id, c->>'kind' AS kind,
       c->>'row' AS row, c->'fields' AS fields, (c->>'hlc') ~ '^[0-9a-f]{16}$' AS hlc_ok
  FROM jsonb_array_elements(synclog.changes(ARRAY['ga', 'gb'], :c0, 100) -> 'changes') c;
SELECT row_id, grp, deleted, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(clocks) k) AS clocked
  FROM synclog.row_meta WHERE tbl = 'tr_items'::regclass ORDER BY row_id;

-- Tracking again with the same group column is a no-op with a notice.
SELECT synclog.track('tr_items', 'g');
SELECT count(*) AS tr_items_ops FROM synclog.ops WHERE table_name = 'tr_items';
-- ... with another group column an error.
SELECT synclog.track('tr_items', 'title');
SELECT synclog.tables() -> 'tr_items' ->> 'group' AS group_column;

-- Clients know tables by name alone: a second "tr_items" in another schema clashes.
CREATE SCHEMA tr_other;
CREATE TABLE tr_other.tr_items (id int PRIMARY KEY, g text);
SELECT synclog.track('tr_other.tr_items', 'g');
SELECT count(*) AS tracked_named_tr_items FROM synclog.tracked WHERE name = 'tr_items';

-- Pushes reach the tracked table.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'tr-client', $$[
    {"id": "da000000-0000-0000-0000-000000000001", "table": "tr_items", "row": "3",
     "kind": "upsert", "fields": {"g": "ga", "title": "pushed"}, "hlc": "0000000000010000"}
  ]$$) r;
SELECT * FROM tr_items ORDER BY id;

-- TRUNCATE is refused while tracked, and the rows stay.
TRUNCATE tr_items;
SELECT count(*) AS rows_left FROM tr_items;

-- Untrack: triggers and metadata go, pushes name an unknown table, direct
-- writes are no longer captured, TRUNCATE works.
SELECT synclog.untrack('tr_items');
SELECT synclog.tables() ? 'tr_items' AS still_tracked;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'tr_items'::regclass;
SELECT count(*) AS meta_rows FROM synclog.row_meta WHERE tbl = 'tr_items'::regclass;
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes
  FROM synclog.push(:'tok', 'tr-client', $$[
    {"id": "da000000-0000-0000-0000-000000000002", "table": "tr_items", "row": "4",
     "kind": "upsert", "fields": {"g": "ga"}, "hlc": "0000000000010000"}
  ]$$) r;
SELECT count(*) AS ops_before FROM synclog.ops WHERE table_name = 'tr_items' \gset
INSERT INTO tr_items (id, g) VALUES (5, 'ga');
SELECT count(*) - :ops_before AS new_ops FROM synclog.ops WHERE table_name = 'tr_items';
TRUNCATE tr_items;
SELECT count(*) AS rows_left FROM tr_items;

-- Now the name is free for the other schema's table.
SELECT synclog.track('tr_other.tr_items', 'g');
SELECT synclog.tables() -> 'tr_items' AS tr_items;
SELECT t.tbl::text FROM synclog.tracked t WHERE t.name = 'tr_items';
SELECT synclog.untrack('tr_other.tr_items');

-- A partitioned table is refused (synclog tracks ordinary tables), with a
-- hint; so is a view and a sequence, above.
CREATE TABLE tr_parted (id int PRIMARY KEY, g text) PARTITION BY RANGE (id);
SELECT synclog.track('tr_parted', 'g');
SELECT count(*) AS tracked FROM synclog.tracked WHERE name = 'tr_parted';

-- Dropping a tracked table: the name must stop resolving (no crash), and a
-- new table of that name must be trackable.  Kept last: a push to the
-- dropped table crashed the backend when this test was written.
CREATE TABLE tr_dropme (id int PRIMARY KEY, g text);
SELECT synclog.track('tr_dropme', 'g');
DROP TABLE tr_dropme;
SELECT synclog.tables() ? 'tr_dropme' AS still_listed;
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes
  FROM synclog.push(:'tok', 'tr-client', $$[
    {"id": "da000000-0000-0000-0000-000000000003", "table": "tr_dropme", "row": "1",
     "kind": "upsert", "fields": {"g": "ga"}, "hlc": "0000000000010000"}
  ]$$) r;
CREATE TABLE tr_dropme (id int PRIMARY KEY, g text);
SELECT synclog.track('tr_dropme', 'g');
SELECT synclog.untrack('tr_dropme');

-- A key or group column altered after track() to a type it refuses: every
-- op on the table is invalid_op, saying why, and a direct write is an
-- error, rather than rows named by text that no longer names one row.
CREATE TABLE tr_altered (id int PRIMARY KEY, g text);
SELECT synclog.track('tr_altered', 'g');
ALTER TABLE tr_altered ALTER COLUMN id TYPE numeric;
SELECT r -> 'rejected' -> 0 ->> 'code' AS code, r -> 'rejected' -> 0 ->> 'message' AS message
  FROM synclog.push(:'tok', 'tr-client', $$[
    {"id": "da000000-0000-0000-0000-000000000010", "table": "tr_altered", "row": "1",
     "kind": "upsert", "fields": {"g": "ga"}, "hlc": "0000000000010000"}
  ]$$) r;
INSERT INTO tr_altered VALUES (1, 'ga');
ALTER TABLE tr_altered ALTER COLUMN id TYPE int, ALTER COLUMN g TYPE timestamptz USING now();
SELECT r -> 'rejected' -> 0 ->> 'code' AS code, r -> 'rejected' -> 0 ->> 'message' AS message
  FROM synclog.push(:'tok', 'tr-client', $$[
    {"id": "da000000-0000-0000-0000-000000000011", "table": "tr_altered", "row": "1",
     "kind": "delete", "hlc": "0000000000010000"}
  ]$$) r;
SELECT count(*) AS rows FROM tr_altered;
SELECT synclog.untrack('tr_altered');
DROP TABLE tr_altered;

-- Clean up.
SELECT synclog.revoke_token(:'tok');
DROP TABLE tr_dropme, tr_parted, tr_items, tr_other.tr_items, tr_nopk, tr_comp CASCADE;
DROP MATERIALIZED VIEW tr_mview;
DROP SEQUENCE tr_seq;
DROP SCHEMA tr_other;
