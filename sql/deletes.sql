--
-- deletes: a delete is absorbing.
--
-- Expected: after a delete, every later op on the row, whatever its clock
-- (higher, lower, another delete), is refused row_deleted and the row stays
-- gone.  A delete of a row the server never saw is acked and leaves a
-- tombstone, so the row's later upsert is refused row_deleted too: the
-- outcome does not depend on the order the ops arrive in.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('de_user', ARRAY['g1']) AS tok \gset
CREATE TABLE de_items (id uuid PRIMARY KEY, g text, title text);
SELECT synclog.track('de_items', 'g');

CREATE FUNCTION de_show(r jsonb) RETURNS TABLE (outcome text, id text, code text, message text)
LANGUAGE sql AS $$
    SELECT 'acked', a, NULL, NULL FROM jsonb_array_elements_text(r -> 'acked') a
    UNION ALL
    SELECT 'rejected', x ->> 'id', x ->> 'code', x ->> 'message' FROM jsonb_array_elements(r -> 'rejected') x
$$;

-- Create a row, delete it with a low clock; a later upsert with a higher
-- clock, one with a lower clock and a second delete are all refused.
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-000000000001", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000001",
   "kind": "upsert", "fields": {"g": "g1", "title": "doomed"}, "hlc": "0000000000050000"}]$$));
SELECT * FROM de_show(synclog.push(:'tok', 'c2', $$[
  {"id": "de000000-0000-0000-0000-000000000002", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000001",
   "kind": "delete", "hlc": "0000000000010000"}]$$));
SELECT count(*) AS rows FROM de_items;
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-000000000003", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000001",
   "kind": "upsert", "fields": {"title": "resurrect"}, "hlc": "0000000000090000"},
  {"id": "de000000-0000-0000-0000-000000000004", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000001",
   "kind": "upsert", "fields": {"g": "g1", "title": "recreate"}, "hlc": "0000000000000001"},
  {"id": "de000000-0000-0000-0000-000000000005", "table": "de_items", "row": "D0000000000000000000000000000001",
   "kind": "delete", "hlc": "0000000000090000"}]$$));
SELECT count(*) AS rows FROM de_items;
SELECT row_id, grp, deleted FROM synclog.row_meta WHERE tbl = 'de_items'::regclass ORDER BY row_id;

-- A delete of a row never seen: acked, tombstone recorded; the row's
-- (late-arriving) upsert and a second delete are refused row_deleted.
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-000000000010", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000002",
   "kind": "delete", "hlc": "0000000000020000"}]$$));
SELECT row_id, deleted FROM synclog.row_meta
 WHERE tbl = 'de_items'::regclass AND row_id = 'd0000000-0000-0000-0000-000000000002';
SELECT * FROM de_show(synclog.push(:'tok', 'c2', $$[
  {"id": "de000000-0000-0000-0000-000000000011", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000002",
   "kind": "upsert", "fields": {"g": "g1", "title": "created offline"}, "hlc": "0000000000010000"},
  {"id": "de000000-0000-0000-0000-000000000012", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000002",
   "kind": "delete", "hlc": "0000000000030000"}]$$));
SELECT count(*) AS rows FROM de_items;

-- Delete and upsert in one batch, in both orders on two rows: same result.
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-000000000020", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000003",
   "kind": "upsert", "fields": {"g": "g1", "title": "three"}, "hlc": "0000000000010000"},
  {"id": "de000000-0000-0000-0000-000000000021", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000003",
   "kind": "delete", "hlc": "0000000000020000"},
  {"id": "de000000-0000-0000-0000-000000000022", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000004",
   "kind": "delete", "hlc": "0000000000020000"},
  {"id": "de000000-0000-0000-0000-000000000023", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000004",
   "kind": "upsert", "fields": {"g": "g1", "title": "four"}, "hlc": "0000000000010000"}]$$));
SELECT count(*) AS rows FROM de_items;

-- Another client's row that stays: deletes touch only their own row.
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-000000000030", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000005",
   "kind": "upsert", "fields": {"g": "g1", "title": "survivor"}, "hlc": "0000000000010000"}]$$));
SELECT id, title FROM de_items;

-- The change stream: each applied delete once, with empty fields; the
-- refused ops never.  (A delete of a row never seen belongs to no group.)
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT (c->>'seq')::bigint - :c0 AS seq, c->>'op_id' AS op_id, c->>'kind' AS kind, c->>'row' AS row,
       c->'fields' AS fields
  FROM jsonb_array_elements(synclog.changes(ARRAY['g1'], :c0, 100) -> 'changes') c;
-- Deleted rows are not in the snapshot.
SELECT s->>'row' AS row FROM jsonb_array_elements(synclog.snapshot(ARRAY['g1']) -> 'rows') s
 WHERE s->>'table' = 'de_items';

-- A never-seen row's tombstone absorbs only a creation in a group its
-- deleter could write.  A token of group g2 deletes row ...0009 before it
-- exists: the g1 owner's later create is acked (the delete had no rights
-- there, as it would have been refused had the row come first), while a
-- tombstone left by a g1 token absorbs the g1 create.
SELECT synclog.create_token('de_other', ARRAY['g2']) AS other \gset
SELECT * FROM de_show(synclog.push(:'other', 'c3', $$[
  {"id": "de000000-0000-0000-0000-000000000090", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000009",
   "kind": "delete", "hlc": "0000000000010000"}]$$));
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-000000000091", "table": "de_items", "row": "d0000000-0000-0000-0000-000000000009",
   "kind": "upsert", "fields": {"g": "g1", "title": "mine"}, "hlc": "0000000000020000"}]$$));
SELECT id, g, title FROM de_items WHERE id = 'd0000000-0000-0000-0000-000000000009';
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-000000000092", "table": "de_items", "row": "d0000000-0000-0000-0000-00000000000a",
   "kind": "delete", "hlc": "0000000000010000"},
  {"id": "de000000-0000-0000-0000-000000000093", "table": "de_items", "row": "d0000000-0000-0000-0000-00000000000a",
   "kind": "upsert", "fields": {"g": "g1", "title": "absorbed"}, "hlc": "0000000000020000"}]$$));
SELECT count(*) AS absorbed_rows FROM de_items WHERE id = 'd0000000-0000-0000-0000-00000000000a';
SELECT synclog.revoke_token(:'other');

-- A row id is the key's canonical text: in a varchar(3) key, 'abc   ' is the
-- row 'abc' (varchar(n) drops the spaces beyond n), so g2's delete and
-- upsert naming 'abc   ' or 'abc ' find g1's row and are refused, and the
-- row stays.  (Before, the delete found no metadata for 'abc   ', left a
-- fresh tombstone and deleted g1's row.)
CREATE TABLE de_short (k varchar(3) PRIMARY KEY, g text, title text);
SELECT synclog.track('de_short', 'g');
SELECT synclog.create_token('de_other2', ARRAY['g2']) AS other \gset
SELECT * FROM de_show(synclog.push(:'tok', 'c1', $$[
  {"id": "de000000-0000-0000-0000-0000000000a0", "table": "de_short", "row": "abc",
   "kind": "upsert", "fields": {"g": "g1", "title": "g1's"}, "hlc": "0000000000010000"}]$$));
SELECT * FROM de_show(synclog.push(:'other', 'c3', $$[
  {"id": "de000000-0000-0000-0000-0000000000a1", "table": "de_short", "row": "abc   ",
   "kind": "delete", "hlc": "0000000000020000"},
  {"id": "de000000-0000-0000-0000-0000000000a2", "table": "de_short", "row": "abc ",
   "kind": "upsert", "fields": {"g": "g2", "title": "taken"}, "hlc": "0000000000020000"}]$$));
SELECT k, g, title FROM de_short;
SELECT row_id, grp, deleted FROM synclog.row_meta WHERE tbl = 'de_short'::regclass;
SELECT synclog.untrack('de_short');
DROP TABLE de_short;
SELECT synclog.revoke_token(:'other');

-- Clean up.
SELECT synclog.untrack('de_items');
DROP TABLE de_items;
DROP FUNCTION de_show(jsonb);
SELECT synclog.revoke_token(:'tok');
