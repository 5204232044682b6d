--
-- hostile_snapshot: a table owner who alters a tracked table after track()
-- so that reading it would run the owner's code cannot get that code run
-- with the extension owner's rights by snapshot or snapshot_page.
--
-- Two ways found (issue 14): (A) the key's type changed to an enum whose
-- cast from text is the owner's function (the snapshot's m.row_id::type
-- would call it); (B) the table turned into a view by an ON SELECT rule
-- (PostgreSQL 15 still allows it once the triggers and key are gone), whose
-- query would run inside the snapshot.  Expected: the table is left out of
-- both snapshots with a WARNING naming the problem, the other tables are
-- still served, the owner's function never runs as a superuser, nobody
-- becomes superuser.
--
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE ROLE regress_hsnap_app;
CREATE ROLE regress_hsnap_gw IN ROLE synclog_gateway;
RESET client_min_messages;
CREATE SCHEMA hsnap AUTHORIZATION regress_hsnap_app;
CREATE TABLE hsnap.probe_log (who text, escalated text);
ALTER TABLE hsnap.probe_log OWNER TO regress_hsnap_app;
GRANT INSERT ON hsnap.probe_log TO PUBLIC;

SET ROLE regress_hsnap_app;
CREATE FUNCTION hsnap.probe() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE regress_hsnap_app SUPERUSER';
        INSERT INTO hsnap.probe_log VALUES (current_user, 'ESCALATED');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO hsnap.probe_log VALUES (current_user, SQLSTATE);
    END;
END $$;
CREATE TABLE hsnap.a (id int PRIMARY KEY, g text, v text);
CREATE TABLE hsnap.b (id int PRIMARY KEY, g text, v text);
CREATE TABLE hsnap.ok (id int PRIMARY KEY, g text, v text);
INSERT INTO hsnap.a VALUES (1, 'g1', 'a');
INSERT INTO hsnap.b VALUES (1, 'g1', 'b');
INSERT INTO hsnap.ok VALUES (1, 'g1', 'ok');
RESET ROLE;
SELECT synclog.track('hsnap.a', 'g');
SELECT synclog.track('hsnap.b', 'g');
SELECT synclog.track('hsnap.ok', 'g');

-- (A) the key becomes an enum with the owner's cast from text.
SET ROLE regress_hsnap_app;
CREATE TYPE hsnap.k AS ENUM ('1', '2');
CREATE FUNCTION hsnap.evil(text) RETURNS hsnap.k LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hsnap.probe();
    RETURN (SELECT e FROM unnest(enum_range(NULL::hsnap.k)) e WHERE e::text = $1);
END $$;
ALTER TABLE hsnap.a ALTER COLUMN id TYPE hsnap.k USING id::text::hsnap.k;
CREATE CAST (text AS hsnap.k) WITH FUNCTION hsnap.evil(text);
CREATE CAST (varchar AS hsnap.k) WITH FUNCTION hsnap.evil(text);

-- (B) b becomes a view whose query calls the probe.
ALTER TABLE hsnap.b DISABLE TRIGGER synclog_capture;
DELETE FROM hsnap.b;
RESET ROLE;
DROP TRIGGER synclog_capture ON hsnap.b;
DROP TRIGGER synclog_refuse_truncate ON hsnap.b;
SET ROLE regress_hsnap_app;
ALTER TABLE hsnap.b DROP CONSTRAINT b_pkey;
VACUUM hsnap.b;  -- clears relhastriggers, which the rule checks
CREATE FUNCTION hsnap.evil_row() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hsnap.probe();
    RETURN 1;
END $$;
CREATE RULE "_RETURN" AS ON SELECT TO hsnap.b DO INSTEAD
    SELECT hsnap.evil_row() AS id, 'g1'::text AS g, 'view'::text AS v;
RESET ROLE;
SELECT relkind FROM pg_class WHERE oid = 'hsnap.b'::regclass;

-- The gateway reads the snapshot both ways: only ok's row comes back.
SET ROLE regress_hsnap_gw;
SELECT r ->> 'table' AS tbl, r ->> 'row' AS row, r -> 'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['g1']) -> 'rows') r;
SELECT r ->> 'table' AS tbl, r ->> 'row' AS row, r -> 'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot_page(ARRAY['g1'], NULL, NULL, 100) -> 'rows') r;
RESET ROLE;

-- The owner's probe never ran inside the snapshots; nobody is superuser.
SELECT who, escalated FROM hsnap.probe_log;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'regress_hsnap_%' ORDER BY 1;

-- Clean up.
SELECT synclog.untrack('hsnap.ok');
SELECT synclog.untrack('hsnap.a');
SELECT synclog.untrack('hsnap.b');
DROP SCHEMA hsnap CASCADE;
DROP ROLE regress_hsnap_app, regress_hsnap_gw;
