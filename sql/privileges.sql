--
-- privileges: who may call what.
--
-- Expected: a role with no grants can call none of the synclog functions;
-- a role granted synclog_gateway can call what a gateway needs (push,
-- changes, snapshot, authenticate, cursor, tables) and nothing else (not
-- track, untrack, create_token, revoke_token, compact, the internals), and
-- can read none of synclog's tables.  A role that may write an application
-- table may keep writing it directly once it is tracked: its writes are
-- captured like anyone's.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
CREATE TABLE pv_items (id int PRIMARY KEY, g text, title text);
SELECT synclog.track('pv_items', 'g');
SELECT synclog.create_token('pv_user', ARRAY['g1']) AS tok \gset

-- (roles are cluster-wide: drop any left over by an interrupted run)
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_synclog_plain, regress_synclog_gw, regress_synclog_app;
RESET client_min_messages;
CREATE ROLE regress_synclog_plain;
CREATE ROLE regress_synclog_gw IN ROLE synclog_gateway;
CREATE ROLE regress_synclog_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON pv_items TO regress_synclog_app;

-- A plain role: nothing.
SET ROLE regress_synclog_plain;
SELECT synclog.changes(ARRAY['g1'], 0, 10);
SELECT synclog.snapshot(ARRAY['g1']);
SELECT synclog.push(:'tok', 'c1', '[]');
SELECT synclog.authenticate(:'tok');
SELECT synclog.cursor();
SELECT synclog.tables();
SELECT synclog.track('pv_items', 'g');
SELECT synclog.untrack('pv_items');
SELECT synclog.create_token('pv_evil', ARRAY['g1']);
SELECT synclog.revoke_token(:'tok');
SELECT synclog.compact();
SELECT count(*) FROM synclog.tokens;
RESET ROLE;

-- A gateway role: the gateway's functions work ...
SET ROLE regress_synclog_gw;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "ff000000-0000-0000-0000-000000000001", "table": "pv_items", "row": "1", "kind": "upsert",
     "fields": {"g": "g1", "title": "via gateway"}, "hlc": "0000000000010000"}]$$) r;
SELECT subject, groups, can_write FROM synclog.authenticate(:'tok');
SELECT synclog.cursor() >= :c0 AS cursor_ok;
SELECT synclog.tables() -> 'pv_items' AS pv_items;
SELECT jsonb_typeof(synclog.changes(ARRAY['g1'], :c0, 10) -> 'changes') AS changes;
SELECT s->'fields' AS fields FROM jsonb_array_elements(synclog.snapshot(ARRAY['g1']) -> 'rows') s
 WHERE s->>'table' = 'pv_items';
-- ... the rest does not.
SELECT synclog.track('pv_items', 'g');
SELECT synclog.untrack('pv_items');
SELECT synclog.create_token('pv_evil', ARRAY['g1']);
SELECT synclog.revoke_token(:'tok');
SELECT synclog.compact();
SELECT synclog.wait_sequenced();
SELECT synclog._hlc_now();
SELECT synclog._random_token();
SELECT synclog._capture_existing('pv_items');
SELECT synclog._start_sequencer();
SELECT count(*) FROM synclog.tokens;
SELECT count(*) FROM synclog.ops;
SELECT count(*) FROM synclog.row_meta;
UPDATE synclog.state SET high_water = 0;
-- and it has no rights on the application table itself
SELECT count(*) FROM pv_items;
RESET ROLE;
-- nothing was changed by the refused calls
SELECT count(*) AS pv_evil_tokens FROM synclog.tokens WHERE subject = 'pv_evil';
SELECT count(*) AS live FROM synclog.authenticate(:'tok');
SELECT synclog.tables() ? 'pv_items' AS still_tracked;

-- The application's own role writes the tracked table directly: allowed,
-- and captured as a server write.
SELECT synclog.wait_sequenced() AS c1 \gset
SET ROLE regress_synclog_app;
INSERT INTO pv_items VALUES (2, 'g1', 'by the app');
UPDATE pv_items SET title = 'edited by the app' WHERE id = 1;
DELETE FROM pv_items WHERE id = 1;
RESET ROLE;
SELECT * FROM pv_items ORDER BY id;
SELECT synclog.wait_sequenced() - :c1 AS new_changes;
SELECT c->>'client_id' AS client_id, c->>'kind' AS kind, c->>'row' AS row, c->'fields' AS fields
  FROM jsonb_array_elements(synclog.changes(ARRAY['g1'], :c1, 10) -> 'changes') c;

-- Every SECURITY DEFINER function of the extension pins its search_path to
-- pg_catalog, pg_temp (PostgreSQL never looks up functions or operators in
-- pg_temp), so no function or operator a non-superuser creates in any schema
-- can be what it calls.  Lists the ones that do not: none.
SELECT p.oid::regprocedure AS unpinned
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'synclog'
 WHERE p.prosecdef
   AND coalesce(p.proconfig, '{}') <> ARRAY['search_path=pg_catalog, pg_temp']
 ORDER BY 1;
-- and how many there are, so that the check above cannot pass on none
SELECT count(*) > 10 AS many_security_definer
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'synclog'
 WHERE p.prosecdef;

-- Clean up.
SELECT synclog.untrack('pv_items');
DROP TABLE pv_items;
SELECT synclog.revoke_token(:'tok');
DROP OWNED BY regress_synclog_plain, regress_synclog_gw, regress_synclog_app;
DROP ROLE regress_synclog_plain, regress_synclog_gw, regress_synclog_app;
