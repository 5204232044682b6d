--
-- deferred: constraints checked at commit (DEFERRABLE INITIALLY DEFERRED)
-- on tracked tables (issue 14).
--
-- push writes a row with the table owner's rights under
-- SECURITY_RESTRICTED_OPERATION, which end with the op, and PostgreSQL
-- refuses to queue a deferred check past that (it would run at commit with
-- the caller's rights).  Expected: track() warns and names the constraint;
-- a push that would queue such a check is refused alone, constraint_violation,
-- with a message naming the constraint and the fix; a push that queues none
-- (an update leaving the key alone) goes through; after ALTER CONSTRAINT ...
-- INITIALLY IMMEDIATE the same ops are applied and checked; direct writes
-- keep the deferred check.
--
\set VERBOSITY default
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('deferred-test', ARRAY['t1']) AS tok \gset

CREATE TABLE df_lists (id int PRIMARY KEY, team text NOT NULL);
CREATE TABLE df_cards (
    id    int PRIMARY KEY,
    team  text NOT NULL,
    title text,
    list  int CONSTRAINT df_cards_list_fk REFERENCES df_lists DEFERRABLE INITIALLY DEFERRED
);
INSERT INTO df_lists VALUES (1, 't1'), (2, 't1');
INSERT INTO df_cards VALUES (10, 't1', 'existing', 1);

-- track warns for both tables: the child checks its key, the parent checks
-- on delete that nothing refers to the row.
SELECT synclog.track('df_lists', 'team');
SELECT synclog.track('df_cards', 'team');

\set VERBOSITY terse
CREATE FUNCTION df_show(r jsonb) RETURNS TABLE (outcome text, id text, code text, message text)
LANGUAGE sql AS $$
    SELECT 'acked', a, NULL, NULL FROM jsonb_array_elements_text(r -> 'acked') a
    UNION ALL
    SELECT 'rejected', x ->> 'id', x ->> 'code', x ->> 'message' FROM jsonb_array_elements(r -> 'rejected') x
$$;

-- An insert of a card queues the check: refused, and names the fix.  The
-- update of the existing card's title queues none and is applied; the op
-- after the refused one in the same batch is applied too.
SELECT * FROM df_show(synclog.push(:'tok', 'dfc', $$[
  {"id": "d0000000-0000-0000-0000-000000000001", "table": "df_cards", "row": "11", "kind": "upsert",
   "fields": {"team": "t1", "title": "new", "list": 1}, "hlc": "0000000000010000"},
  {"id": "d0000000-0000-0000-0000-000000000002", "table": "df_cards", "row": "10", "kind": "upsert",
   "fields": {"title": "renamed"}, "hlc": "0000000000010001"},
  {"id": "d0000000-0000-0000-0000-000000000003", "table": "df_lists", "row": "3", "kind": "upsert",
   "fields": {"team": "t1"}, "hlc": "0000000000010002"}]$$));
SELECT id, title, list FROM df_cards ORDER BY id;

-- Deleting a list would queue the "nothing refers to it" check: refused.
SELECT * FROM df_show(synclog.push(:'tok', 'dfc', $$[
  {"id": "d0000000-0000-0000-0000-000000000004", "table": "df_lists", "row": "2", "kind": "delete",
   "hlc": "0000000000010003"}]$$));
SELECT id FROM df_lists ORDER BY id;

-- Checked per statement instead, the same ops go through, and the check
-- still holds: a card pointing at no list is refused, as any constraint.
ALTER TABLE df_cards ALTER CONSTRAINT df_cards_list_fk DEFERRABLE INITIALLY IMMEDIATE;
SELECT * FROM df_show(synclog.push(:'tok', 'dfc', $$[
  {"id": "d0000000-0000-0000-0000-000000000005", "table": "df_cards", "row": "11", "kind": "upsert",
   "fields": {"team": "t1", "title": "new", "list": 1}, "hlc": "0000000000010004"},
  {"id": "d0000000-0000-0000-0000-000000000006", "table": "df_lists", "row": "2", "kind": "delete",
   "hlc": "0000000000010005"},
  {"id": "d0000000-0000-0000-0000-000000000007", "table": "df_cards", "row": "12", "kind": "upsert",
   "fields": {"team": "t1", "title": "orphan", "list": 99}, "hlc": "0000000000010006"}]$$));
SELECT id, title, list FROM df_cards ORDER BY id;
SELECT id FROM df_lists ORDER BY id;

-- Direct writes are not synclog's to restrict: a deferred check still
-- defers to commit there.
ALTER TABLE df_cards ALTER CONSTRAINT df_cards_list_fk DEFERRABLE INITIALLY DEFERRED;
BEGIN;
INSERT INTO df_cards VALUES (13, 't1', 'before its list', 5);
INSERT INTO df_lists VALUES (5, 't1');
COMMIT;
SELECT id, list FROM df_cards WHERE id = 13;

-- Clean up.
SELECT synclog.untrack('df_cards');
SELECT synclog.untrack('df_lists');
DROP TABLE df_cards, df_lists;
DROP FUNCTION df_show(jsonb);
SELECT synclog.revoke_token(:'tok');
