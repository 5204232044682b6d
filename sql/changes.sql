--
-- changes: synclog.changes(), synclog.snapshot(), synclog.cursor(), compaction.
--
-- Expected: changes come in seq order, gap-free, only for the groups asked
-- for; "cursor" is the last seq returned when the page is full, else the
-- high-water mark (also when no change is for these groups); a cursor
-- beyond the high-water mark or below what compaction kept gets
-- snapshot_required; a snapshot is consistent with the cursor it returns.
-- An op removed by compaction, pushed again, is acked and has no effect.
--
-- Seqs are shown relative to the cursor when the file starts (:c0).
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('ch_a', ARRAY['A']) AS tok_a \gset
SELECT synclog.create_token('ch_b', ARRAY['B']) AS tok_b \gset
CREATE TABLE ch_items (id int PRIMARY KEY, g text, title text);
SELECT synclog.track('ch_items', 'g');

-- A page of changes in the order returned, seqs relative to :c0, with the
-- row's group (NULL once deleted).
CREATE FUNCTION ch_page(groups text[], after bigint, max int, c0 bigint)
RETURNS TABLE (seq bigint, grp text, row_id text, kind text, fields jsonb)
LANGUAGE sql AS $$
    SELECT (c->>'seq')::bigint - c0, (SELECT i.g FROM ch_items i WHERE i.id = (c->>'row')::int),
           c->>'row', c->>'kind', c->'fields'
      FROM jsonb_array_elements(synclog.changes(groups, after, max) -> 'changes') WITH ORDINALITY AS x(c, n)
     ORDER BY n
$$;

-- Five changes alternating between groups A and B, in three transactions.
SELECT r -> 'rejected' AS rejected FROM synclog.push(:'tok_a', 'ca', $$[
  {"id": "cc000000-0000-0000-0000-000000000001", "table": "ch_items", "row": "1", "kind": "upsert",
   "fields": {"g": "A", "title": "a1"}, "hlc": "0000000000010000"}]$$) r;
SELECT r -> 'rejected' AS rejected FROM synclog.push(:'tok_b', 'cb', $$[
  {"id": "cc000000-0000-0000-0000-000000000002", "table": "ch_items", "row": "2", "kind": "upsert",
   "fields": {"g": "B", "title": "b2"}, "hlc": "0000000000010000"}]$$) r;
SELECT r -> 'rejected' AS rejected FROM synclog.push(:'tok_a', 'ca', $$[
  {"id": "cc000000-0000-0000-0000-000000000003", "table": "ch_items", "row": "3", "kind": "upsert",
   "fields": {"g": "A", "title": "a3"}, "hlc": "0000000000010000"}]$$) r;
INSERT INTO ch_items VALUES (4, 'B', 'b4 by the server');
SELECT r -> 'rejected' AS rejected FROM synclog.push(:'tok_a', 'ca', $$[
  {"id": "cc000000-0000-0000-0000-000000000005", "table": "ch_items", "row": "1", "kind": "upsert",
   "fields": {"title": "a1 again"}, "hlc": "0000000000020000"}]$$) r;
SELECT synclog.wait_sequenced() - :c0 AS high_water;
SELECT synclog.cursor() - :c0 AS cursor;

-- All groups: gap-free, in seq order.
SELECT * FROM ch_page(ARRAY['A', 'B'], :c0, 100, :c0);
-- One group: never a change of the other.
SELECT * FROM ch_page(ARRAY['A'], :c0, 100, :c0);
SELECT * FROM ch_page(ARRAY['B'], :c0, 100, :c0);
SELECT synclog.changes(ARRAY['A'], :c0, 100) ->> 'cursor' = synclog.cursor()::text AS cursor_is_high_water;
-- No change for these groups: empty, and the cursor still moves to the high-water mark.
SELECT synclog.changes(ARRAY['C'], :c0, 100) -> 'changes' AS changes,
       (synclog.changes(ARRAY['C'], :c0, 100) ->> 'cursor')::bigint - :c0 AS cursor;
SELECT synclog.changes('{}', :c0, 100) -> 'changes' AS changes,
       (synclog.changes('{}', :c0, 100) ->> 'cursor')::bigint - :c0 AS cursor;

-- Paging with max: a full page ends at its last seq; the last page at the
-- high-water mark.
SELECT (synclog.changes(ARRAY['A'], :c0, 2) ->> 'cursor')::bigint - :c0 AS cursor;
SELECT * FROM ch_page(ARRAY['A'], :c0, 2, :c0);
SELECT (synclog.changes(ARRAY['A'], :c0 + 3, 2) ->> 'cursor')::bigint - :c0 AS cursor;
SELECT * FROM ch_page(ARRAY['A'], :c0 + 3, 2, :c0);
SELECT (synclog.changes(ARRAY['A', 'B'], :c0, 1) ->> 'cursor')::bigint - :c0 AS cursor;
SELECT (synclog.changes(ARRAY['A', 'B'], :c0 + 1, 3) ->> 'cursor')::bigint - :c0 AS cursor;
SELECT * FROM ch_page(ARRAY['A', 'B'], :c0 + 1, 3, :c0);
SELECT (synclog.changes(ARRAY['B'], :c0 + 4, 1) ->> 'cursor')::bigint - :c0 AS cursor;
-- Walking group A page by page with max = 1 visits each of its changes once.
WITH RECURSIVE walk(n, after, page) AS (
    SELECT 0, :c0::bigint, NULL::jsonb
    UNION ALL
    SELECT n + 1, (p ->> 'cursor')::bigint, p -> 'changes'
      FROM walk, LATERAL (SELECT synclog.changes(ARRAY['A'], walk.after, 1) AS p) x
     WHERE n < 10 AND walk.after < synclog.cursor()
)
SELECT n, after - :c0 AS cursor, (SELECT array_agg((c->>'seq')::bigint - :c0) FROM jsonb_array_elements(page) c) AS seqs
  FROM walk WHERE n > 0;
-- At the high-water mark: nothing, cursor unchanged.
SELECT synclog.changes(ARRAY['A'], synclog.cursor(), 100) -> 'changes' AS changes,
       (synclog.changes(ARRAY['A'], synclog.cursor(), 100) ->> 'cursor')::bigint - :c0 AS cursor;
-- Beyond it (a restored backup, another server): snapshot_required.
SELECT synclog.changes(ARRAY['A'], synclog.cursor() + 1, 100) - 'cursor' AS reply,
       (synclog.changes(ARRAY['A'], synclog.cursor() + 1, 100) ->> 'cursor')::bigint - :c0 AS cursor;

-- Argument errors.
SELECT synclog.changes(NULL, 0, 10);
SELECT synclog.changes(ARRAY['A'], NULL, 10);
SELECT synclog.changes(ARRAY['A'], -1, 10);
SELECT synclog.changes(ARRAY['A'], 0, NULL);
SELECT synclog.changes(ARRAY['A'], 0, 0);
SELECT synclog.changes(ARRAY['A'], 0, -5);
SELECT synclog.snapshot(NULL);

-- Snapshot: the current rows of the groups asked for, with their clocks,
-- at the current cursor.
SELECT s->>'table' AS tbl, s->>'row' AS row, s->'fields' AS fields, s->'clocks' -> 'title' ->> 1 AS title_by
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['A']) -> 'rows') s;
SELECT s->>'row' AS row, s->'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['B']) -> 'rows') s;
SELECT synclog.snapshot(ARRAY['C']) -> 'rows' AS rows,
       (synclog.snapshot(ARRAY['C']) ->> 'cursor')::bigint - :c0 AS cursor;
SELECT synclog.snapshot(ARRAY['A']) ->> 'cursor' AS snap_cursor \gset
SELECT :snap_cursor::bigint = synclog.cursor() AS at_high_water;
-- snapshot_page: the same rows as snapshot(), page by page in (table, row)
-- order, each page resuming after the position the previous one returned.
CREATE FUNCTION pg_temp.paged(groups text[], page int, page_bytes bigint DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $f$
DECLARE p jsonb; t text; r text; acc jsonb := '[]'; pages int := 0;
BEGIN
    LOOP
        p := synclog.snapshot_page(groups, t, r, page, page_bytes);
        acc := acc || (p -> 'rows');
        pages := pages + 1;
        EXIT WHEN NOT (p ->> 'more')::boolean;
        t := p ->> 'table';
        r := p ->> 'row';
    END LOOP;
    RETURN jsonb_build_object('rows', acc, 'pages', pages);
END
$f$;
SELECT page, pg_temp.paged(ARRAY['A', 'B'], page) -> 'rows' = synclog.snapshot(ARRAY['A', 'B']) -> 'rows' AS same_rows,
       pg_temp.paged(ARRAY['A', 'B'], page) -> 'pages' AS pages
  FROM generate_series(1, 4) page;
-- A byte bound: pages stop once their rows' text reaches it, but hold at
-- least one row.
SELECT b AS page_bytes, pg_temp.paged(ARRAY['A', 'B'], 100, b) -> 'rows' = synclog.snapshot(ARRAY['A', 'B']) -> 'rows' AS same_rows,
       pg_temp.paged(ARRAY['A', 'B'], 100, b) -> 'pages' AS pages
  FROM unnest(ARRAY[1, 150, 100000]) b;
SELECT synclog.snapshot_page(ARRAY['A'], NULL, NULL, 10, 0);
SELECT synclog.snapshot_page(ARRAY['C'], NULL, NULL, 10) - 'cursor' AS empty_page;
SELECT synclog.snapshot_page(ARRAY['A'], 'ch_items', NULL, 10);
SELECT synclog.snapshot_page(ARRAY['A'], NULL, NULL, 0);
SELECT synclog.snapshot_page(NULL, NULL, NULL, 10);
-- Each change names its group.
SELECT c ->> 'row' AS row, c ->> 'group' AS grp
  FROM jsonb_array_elements(synclog.changes(ARRAY['A', 'B'], :c0, 100) -> 'changes') c
 ORDER BY (c ->> 'seq')::bigint LIMIT 4;
-- What happens after a snapshot is exactly what changes() gives from its cursor.
SELECT r -> 'rejected' AS rejected FROM synclog.push(:'tok_a', 'ca', $$[
  {"id": "cc000000-0000-0000-0000-000000000006", "table": "ch_items", "row": "3", "kind": "delete",
   "hlc": "0000000000030000"},
  {"id": "cc000000-0000-0000-0000-000000000007", "table": "ch_items", "row": "6", "kind": "upsert",
   "fields": {"g": "A", "title": "a6"}, "hlc": "0000000000030000"}]$$) r;
SELECT synclog.wait_sequenced() - :c0 AS high_water;
SELECT seq - (:snap_cursor - :c0) AS seq_after_snapshot, row_id, kind, fields
  FROM ch_page(ARRAY['A'], :snap_cursor, 100, :c0);
SELECT s->>'row' AS row, s->'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['A']) -> 'rows') s;

-- Compaction: with a retention of 1 s, everything above is compacted.
SET synclog.retention = '1s';
SELECT pg_sleep(1.2);
SELECT synclog.compact() AS through \gset
SELECT :through = synclog.cursor() AS compacted_to_high_water;
SELECT count(*) AS ops_left FROM synclog.ops WHERE table_name = 'ch_items';
SELECT count(*) AS ids_kept FROM synclog.compacted_ops
 WHERE op_id::text LIKE 'cc000000-%';
-- A cursor older than what was kept needs a snapshot ...
SELECT synclog.changes(ARRAY['A'], 0, 100) - 'cursor' AS reply,
       synclog.changes(ARRAY['A'], 0, 100) ->> 'cursor' = synclog.cursor()::text AS cursor_is_high_water;
SELECT synclog.changes(ARRAY['A'], :c0, 100) - 'cursor' AS reply;
-- ... a cursor at compacted_through still works.
SELECT synclog.changes(ARRAY['A'], :through, 100) -> 'changes' AS changes,
       synclog.changes(ARRAY['A'], :through, 100) ->> 'cursor' = :'through' AS cursor_unchanged;
-- Compacting again changes nothing.
SELECT synclog.compact() = :through AS same_through;
-- A compacted op pushed again: acked, no effect, no new change.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok_a', 'ca', $$[
  {"id": "cc000000-0000-0000-0000-000000000001", "table": "ch_items", "row": "1", "kind": "upsert",
   "fields": {"g": "A", "title": "a1 resent"}, "hlc": "0000000000090000"},
  {"id": "CC000000-0000-0000-0000-000000000006", "table": "ch_items", "row": "3", "kind": "delete",
   "hlc": "0000000000030000"}]$$) r;
SELECT synclog.wait_sequenced() = :through AS nothing_new;
SELECT * FROM ch_items ORDER BY id;
-- New ops after compaction are served from compacted_through on.
SELECT r -> 'rejected' AS rejected FROM synclog.push(:'tok_a', 'ca', $$[
  {"id": "cc000000-0000-0000-0000-000000000008", "table": "ch_items", "row": "1", "kind": "upsert",
   "fields": {"title": "after compaction"}, "hlc": "0000000000090000"}]$$) r;
SELECT synclog.wait_sequenced() - :through AS new_changes;
SELECT seq - (:through - :c0) AS seq_after_compaction, row_id, kind, fields
  FROM ch_page(ARRAY['A'], :through, 100, :c0);
RESET synclog.retention;

-- Clean up.
SELECT synclog.untrack('ch_items');
DROP TABLE ch_items;
DROP FUNCTION ch_page(text[], bigint, int, bigint);
SELECT synclog.revoke_token(:'tok_a');
SELECT synclog.revoke_token(:'tok_b');
