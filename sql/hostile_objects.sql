--
-- hostile_objects: code that a non-superuser attaches to a tracked table, or
-- plants in schema public, never runs with the extension owner's rights
-- (issue 14, findings 1-3).
--
-- Three ordinary roles, acting through SET SESSION AUTHORIZATION as if they
-- had logged in: regress_hostile_app owns the application tables (in its own
-- schema) and nothing else; regress_hostile_gw is a gateway
-- (synclog_gateway); regress_hostile_mallory may only CREATE in schema
-- public.  Every piece of hostile code calls a probe that logs current_user
-- and session_user (a superuser's name is masked as 'a superuser') and tries
-- ALTER ROLE ... SUPERUSER, logging the SQLSTATE it gets.
--
-- Expected: the app's code (triggers, CHECK, DEFAULT, domain checks,
-- generated columns, index expressions, policies, casts to json) runs as
-- regress_hostile_app and fails to escalate with 42501, whoever calls push,
-- snapshot, snapshot_page or track; a deferred trigger, which would run
-- after push returns, makes push refuse the op instead; a cast that raises
-- breaks only the rows that use it; mallory's operators and functions in
-- public never run inside synclog at all; no role ends up a superuser.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DO $$
DECLARE r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'regress\_hostile\_%' LOOP
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
DROP SCHEMA IF EXISTS hostile CASCADE;
RESET client_min_messages;
SELECT synclog.wait_sequenced() AS c0 \gset

CREATE ROLE regress_hostile_app;
CREATE ROLE regress_hostile_gw IN ROLE synclog_gateway;
CREATE ROLE regress_hostile_mallory;
GRANT CREATE ON SCHEMA public TO regress_hostile_mallory;
CREATE SCHEMA hostile AUTHORIZATION regress_hostile_app;
SELECT synclog.create_token('regress_hostile', ARRAY['ga', 'gb', 'gboom']) AS tok \gset

-- Neither the app nor the gateway may track a table: only the extension's owner.
SELECT r AS role, has_function_privilege(r, 'synclog.track(regclass, name)', 'EXECUTE') AS may_track
  FROM unnest(ARRAY['regress_hostile_app', 'regress_hostile_gw', 'regress_hostile_mallory']) r;

------------------------------------------------------------------------------
-- The app's hostile objects.
------------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_hostile_app;
CREATE TABLE hostile.log (vector text, cur text, sess text, outcome text);
GRANT INSERT ON hostile.log TO PUBLIC;

CREATE FUNCTION hostile.who(r name) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN a.rolsuper THEN 'a superuser' ELSE a.rolname::text END
      FROM pg_catalog.pg_roles a WHERE a.rolname OPERATOR(pg_catalog.=) r
$$;
CREATE FUNCTION hostile.probe(vec text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        ALTER ROLE regress_hostile_app SUPERUSER;
        INSERT INTO hostile.log VALUES (vec, hostile.who(current_user), hostile.who(session_user), 'ESCALATED');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO hostile.log VALUES (vec, hostile.who(current_user), hostile.who(session_user), SQLSTATE);
    END;
    RETURN true;
END
$$;
-- Declared IMMUTABLE (a lie), so that a generated column and an index may use it.
CREATE FUNCTION hostile.imm_probe(vec text, n int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM hostile.probe(vec);
    RETURN n;
END
$$;
CREATE FUNCTION hostile.probe_text(vec text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hostile.probe(vec);
    RETURN vec;
END
$$;
CREATE FUNCTION hostile.trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hostile.probe(pg_catalog.format('trigger %s %s', TG_WHEN, TG_OP));
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
CREATE DOMAIN hostile.checked AS text CHECK (hostile.probe('domain check'));

-- (1)-(7): one table with a trigger, a CHECK, a DEFAULT, a domain column, a
-- generated column, an index expression and a forced policy.
CREATE TABLE hostile.items (
    id   int PRIMARY KEY,
    g    text NOT NULL,
    n    int,
    d    hostile.checked,
    dflt text DEFAULT hostile.probe_text('default expression'),
    gen  int GENERATED ALWAYS AS (hostile.imm_probe('generated column', n)) STORED,
    CONSTRAINT items_check CHECK (hostile.probe('check constraint'))
);
CREATE TRIGGER items_before BEFORE INSERT OR UPDATE OR DELETE ON hostile.items
    FOR EACH ROW EXECUTE FUNCTION hostile.trg();
CREATE INDEX items_expr ON hostile.items (hostile.imm_probe('index expression', n));
ALTER TABLE hostile.items ENABLE ROW LEVEL SECURITY;
ALTER TABLE hostile.items FORCE ROW LEVEL SECURITY;
CREATE POLICY items_policy ON hostile.items USING (hostile.probe('policy'))
    WITH CHECK (hostile.probe('policy'));

-- (8) An enum whose casts to json and jsonb are the app's functions.  (Rows
-- are rendered as to_jsonb and row_to_json do, which use the cast to json:
-- the jsonb one stays unused, and is there in case that changes.)
CREATE TYPE hostile.mood AS ENUM ('happy', 'sad');
CREATE FUNCTION hostile.mood_json(m hostile.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hostile.probe('cast mood AS json');
    RETURN pg_catalog.to_json(m::text);
END
$$;
CREATE FUNCTION hostile.mood_jsonb(m hostile.mood) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hostile.probe('cast mood AS jsonb');
    RETURN pg_catalog.to_jsonb(m::text);
END
$$;
CREATE CAST (hostile.mood AS json) WITH FUNCTION hostile.mood_json(hostile.mood);
CREATE CAST (hostile.mood AS jsonb) WITH FUNCTION hostile.mood_jsonb(hostile.mood);
CREATE TABLE hostile.moods (id uuid PRIMARY KEY, g text NOT NULL, m hostile.mood);
-- rows already there when the table is tracked
INSERT INTO hostile.moods VALUES ('00000000-0000-0000-0000-00000000000a', 'ga', 'happy');

-- (8') The same with a cast to json that the app will later make raise for
-- one value; for now it renders every value.
CREATE TYPE hostile.risky AS ENUM ('fine', 'boom');
CREATE FUNCTION hostile.risky_json(v hostile.risky) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    RETURN pg_catalog.to_json(v::text);
END
$$;
CREATE CAST (hostile.risky AS json) WITH FUNCTION hostile.risky_json(hostile.risky);
CREATE TABLE hostile.risks (id int PRIMARY KEY, g text NOT NULL, v hostile.risky);
INSERT INTO hostile.risks VALUES (1, 'ga', 'fine'), (5, 'gboom', 'boom');

-- (10) A deferred constraint trigger: it would fire at commit, after push
-- has returned to its caller's identity.
CREATE FUNCTION hostile.deferred_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hostile.probe('deferred trigger');
    RETURN NULL;
END
$$;
CREATE TABLE hostile.deferred (id int PRIMARY KEY, g text NOT NULL);
CREATE CONSTRAINT TRIGGER deferred_after AFTER INSERT OR UPDATE ON hostile.deferred
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hostile.deferred_trg();

-- A plain table for the search_path attacks.
CREATE TABLE hostile.plain (id int PRIMARY KEY, g text NOT NULL, v text);
INSERT INTO hostile.plain VALUES (1, 'ga', 'one'), (2, 'ga', 'two');
RESET SESSION AUTHORIZATION;

-- The log as it stands, then emptied: who ran which vector, and how the
-- escalation attempt ended.
\set showlog 'SELECT DISTINCT vector, cur, sess, outcome FROM hostile.log ORDER BY 1, 2, 3, 4; TRUNCATE hostile.log;'
-- (creating the objects above ran some of them as the app: not of interest)
TRUNCATE hostile.log;

-- The extension's owner tracks the tables.  Rendering the existing row of
-- hostile.moods runs the app's cast, as the app.
SELECT synclog.track('hostile.items', 'g');
SELECT synclog.track('hostile.moods', 'g');
SELECT synclog.track('hostile.risks', 'g');
SELECT synclog.track('hostile.deferred', 'g');
SELECT synclog.track('hostile.plain', 'g');
:showlog

-- The app cannot track or untrack a table itself.
SET SESSION AUTHORIZATION regress_hostile_app;
SELECT synclog.track('hostile.items', 'g');
SELECT synclog.untrack('hostile.items');
RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------------
-- (1)-(7) pushed by the gateway: insert (omitting the defaulted column),
-- update, delete.
------------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000001", "table": "items", "row": "1", "kind": "upsert",
     "fields": {"g": "ga", "n": 1, "d": "x"}, "hlc": "0000000000010000"}]$$) r;
RESET SESSION AUTHORIZATION;
:showlog
SELECT id, g, n, d, dflt, gen FROM hostile.items;

SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000002", "table": "items", "row": "1", "kind": "upsert",
     "fields": {"n": 2, "d": "y"}, "hlc": "0000000000020000"}]$$) r;
RESET SESSION AUTHORIZATION;
:showlog
SELECT id, g, n, d, dflt, gen FROM hostile.items;

SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000003", "table": "items", "row": "1", "kind": "delete",
     "hlc": "0000000000030000"}]$$) r;
RESET SESSION AUTHORIZATION;
:showlog
SELECT count(*) AS items_left FROM hostile.items;

-- The same push made by a superuser (a gateway misconfigured to log in as
-- one): the app's code still runs as the app.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000004", "table": "items", "row": "2", "kind": "upsert",
     "fields": {"g": "ga", "n": 4, "d": "z"}, "hlc": "0000000000040000"}]$$) r;
:showlog

------------------------------------------------------------------------------
-- (8) The cast to json: a plain INSERT by the app (the capture trigger
-- renders the row), push, snapshot and snapshot_page by the gateway.
------------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_hostile_app;
INSERT INTO hostile.moods VALUES ('00000000-0000-0000-0000-00000000000b', 'ga', 'sad');
UPDATE hostile.moods SET m = 'happy' WHERE id = '00000000-0000-0000-0000-00000000000b';
RESET SESSION AUTHORIZATION;
:showlog

SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000011", "table": "moods", "row": "00000000-0000-0000-0000-00000000000c",
     "kind": "upsert", "fields": {"g": "ga", "m": "sad"}, "hlc": "0000000000010000"},
    {"id": "e0000000-0000-0000-0000-000000000012", "table": "moods", "row": "00000000-0000-0000-0000-00000000000a",
     "kind": "upsert", "fields": {"m": "sad"}, "hlc": "0000000000050000"}]$$) r;
RESET SESSION AUTHORIZATION;
:showlog

SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT s ->> 'row' AS row, s -> 'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['ga']) -> 'rows') s
 WHERE s ->> 'table' = 'moods' ORDER BY 1;
RESET SESSION AUTHORIZATION;
:showlog

SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT s ->> 'row' AS row, s -> 'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot_page(ARRAY['ga'], 'moods', '', 10) -> 'rows') s
 WHERE s ->> 'table' = 'moods' ORDER BY 1;
RESET SESSION AUTHORIZATION;
:showlog

-- snapshot's renderer is not for the gateway to call, and takes only rows of
-- the table it names (no rendering a row as another table's owner).
SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT synclog._row_jsonb('pg_catalog.pg_class', ROW(1));
RESET SESSION AUTHORIZATION;
SELECT synclog._row_jsonb('hostile.moods', x) FROM hostile.plain x WHERE id = 1;

------------------------------------------------------------------------------
-- (8') A cast that raises: the row that uses it cannot be written or
-- rendered; every other row, and every snapshot without it, still works.
------------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_hostile_app;
CREATE OR REPLACE FUNCTION hostile.risky_json(v hostile.risky) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    IF v::text OPERATOR(pg_catalog.=) 'boom' THEN
        RAISE EXCEPTION 'hostile cast refuses to render %', v;
    END IF;
    RETURN pg_catalog.to_json(v::text);
END
$$;
-- a plain INSERT of such a row fails in the capture trigger, with the cast's error
INSERT INTO hostile.risks VALUES (2, 'gboom', 'boom');
RESET SESSION AUTHORIZATION;
-- a push of it is refused, alone in its batch
SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT r -> 'acked' AS acked, jsonb_path_query_array(r, '$.rejected[*].code') AS codes,
       jsonb_path_query_array(r, '$.rejected[*].message') AS messages
  FROM synclog.push(:'tok', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000021", "table": "risks", "row": "3",
     "kind": "upsert", "fields": {"g": "gboom", "v": "boom"}, "hlc": "0000000000010000"},
    {"id": "e0000000-0000-0000-0000-000000000022", "table": "risks", "row": "4",
     "kind": "upsert", "fields": {"g": "gb", "v": "fine"}, "hlc": "0000000000010000"}]$$) r;
RESET SESSION AUTHORIZATION;
SELECT * FROM hostile.risks ORDER BY id;
-- row 5 (group gboom) is now 'boom': only a snapshot that includes its group fails
SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT s ->> 'table' AS tbl, s ->> 'row' AS row, s -> 'fields' AS fields
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['ga', 'gb']) -> 'rows') s
 WHERE s ->> 'table' = 'risks' ORDER BY 1, 2;
SELECT synclog.snapshot(ARRAY['gboom']) IS NOT NULL AS rendered;
SELECT synclog.snapshot_page(ARRAY['ga', 'gboom'], NULL, NULL, 100) IS NOT NULL AS rendered;
SELECT jsonb_array_length(synclog.snapshot_page(ARRAY['gb'], NULL, NULL, 100) -> 'rows') AS gb_rows;
RESET SESSION AUTHORIZATION;
-- tracking a table that holds such a row fails, and registers nothing
SELECT synclog.untrack('hostile.risks');
SELECT synclog.track('hostile.risks', 'g');
SELECT synclog.tables() ? 'risks' AS risks_tracked;
SELECT count(*) AS risks_triggers FROM pg_trigger WHERE tgrelid = 'hostile.risks'::regclass AND tgname LIKE 'synclog%';
:showlog

------------------------------------------------------------------------------
-- (10) A deferred trigger cannot be queued from inside push: the op is
-- refused, and the trigger never runs as the gateway.  A plain write by the
-- app still fires it, as the app.
------------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT r -> 'acked' AS acked, jsonb_path_query_array(r, '$.rejected[*].code') AS codes,
       jsonb_path_query_array(r, '$.rejected[*].message') AS messages
  FROM synclog.push(:'tok', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000031", "table": "deferred", "row": "1",
     "kind": "upsert", "fields": {"g": "ga"}, "hlc": "0000000000010000"}]$$) r;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS deferred_rows FROM hostile.deferred;
:showlog
SET SESSION AUTHORIZATION regress_hostile_app;
INSERT INTO hostile.deferred VALUES (2, 'ga');
RESET SESSION AUTHORIZATION;
:showlog

------------------------------------------------------------------------------
-- (9) mallory shadows, in schema public, the operators and functions that
-- synclog's SQL and C code use, each a trap that logs and tries to escalate.
------------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_hostile_mallory;
CREATE TABLE public.regress_hostile_mallory_log (what text, cur text, sess text, outcome text);
GRANT INSERT ON public.regress_hostile_mallory_log TO PUBLIC;
CREATE FUNCTION public.regress_hostile_trap(what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    cur text := (SELECT CASE WHEN a.rolsuper THEN 'a superuser' ELSE a.rolname::text END
                   FROM pg_roles a WHERE a.rolname OPERATOR(pg_catalog.=) current_user);
    sess text := (SELECT CASE WHEN a.rolsuper THEN 'a superuser' ELSE a.rolname::text END
                   FROM pg_roles a WHERE a.rolname OPERATOR(pg_catalog.=) session_user);
BEGIN
    BEGIN
        ALTER ROLE regress_hostile_mallory SUPERUSER;
        INSERT INTO public.regress_hostile_mallory_log VALUES (what, cur, sess, 'ESCALATED');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.regress_hostile_mallory_log VALUES (what, cur, sess, SQLSTATE);
    END;
END
$$;
DO $$
DECLARE
    o record;
    i int := 0;
BEGIN
    FOR o IN SELECT * FROM (VALUES
        ('=', 'regclass', 'regclass', 'boolean'), ('=', 'oid', 'oid', 'boolean'),
        ('=', 'text', 'text', 'boolean'), ('=', 'name', 'name', 'boolean'),
        ('=', 'uuid', 'uuid', 'boolean'), ('=', 'integer', 'integer', 'boolean'),
        ('=', 'bigint', 'bigint', 'boolean'), ('=', 'bytea', 'bytea', 'boolean'),
        ('=', '"char"', '"char"', 'boolean'), ('=', 'boolean', 'boolean', 'boolean'),
        ('<>', '"char"', '"char"', 'boolean'), ('<>', 'integer', 'integer', 'boolean'),
        ('<', 'bigint', 'bigint', 'boolean'), ('<=', 'bigint', 'bigint', 'boolean'),
        ('>', 'bigint', 'bigint', 'boolean'), ('>=', 'bigint', 'bigint', 'boolean'),
        ('<', 'timestamptz', 'timestamptz', 'boolean'), ('>', 'text', 'text', 'boolean'),
        ('>=', 'text', 'text', 'boolean'), ('>=', 'integer', 'integer', 'boolean'),
        ('<', 'integer', 'integer', 'boolean'),
        ('||', 'jsonb', 'jsonb', 'jsonb'), ('-', 'bigint', 'bigint', 'bigint'),
        ('+', 'integer', 'integer', 'integer'), ('-', 'integer', 'integer', 'integer'),
        ('->', 'jsonb', 'integer', 'jsonb'), ('->>', 'jsonb', 'text', 'text'),
        ('->', 'jsonb', 'text', 'jsonb'), ('?', 'jsonb', 'text', 'boolean')
      ) v(op, l, r, res)
    LOOP
        i := i + 1;
        EXECUTE format($f$CREATE FUNCTION public.regress_hostile_op%s(a %s, b %s) RETURNS %s
                          LANGUAGE plpgsql SET search_path = pg_catalog AS $b$
                          BEGIN
                              PERFORM public.regress_hostile_trap(%L);
                              RETURN a OPERATOR(pg_catalog.%s) b;
                          END $b$ $f$,
                       i, o.l, o.r, o.res, format('operator %s (%s, %s)', o.op, o.l, o.r), o.op);
        EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.regress_hostile_op%s)',
                       o.op, o.l, o.r, i);
    END LOOP;
END
$$;
-- functions: same names as pg_catalog's, exact or better matches for the
-- arguments synclog passes
CREATE FUNCTION public.sha256(b bytea) RETURNS bytea LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('sha256(bytea)'); RETURN pg_catalog.sha256(b); END $$;
CREATE FUNCTION public.convert_to(t text, e text) RETURNS bytea LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('convert_to(text, text)'); RETURN pg_catalog.convert_to(t, e::name); END $$;
CREATE FUNCTION public.to_jsonb(r record) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('to_jsonb(record)'); RETURN pg_catalog.to_jsonb(r); END $$;
CREATE FUNCTION public.to_jsonb(v anyelement) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('to_jsonb(anyelement)'); RETURN pg_catalog.to_jsonb(v); END $$;
CREATE FUNCTION public.row_to_json(r record) RETURNS json LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('row_to_json(record)'); RETURN pg_catalog.row_to_json(r); END $$;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a uuid[]) RETURNS SETOF uuid LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('unnest(uuid[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('unnest(bigint[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a jsonb[]) RETURNS SETOF jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('unnest(jsonb[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.jsonb_build_object(a text, b jsonb, c text, d bigint) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('jsonb_build_object(text, jsonb, text, bigint)');
      RETURN pg_catalog.jsonb_build_object(a, b, c, d); END $$;
CREATE FUNCTION public.jsonb_build_object(a text, b boolean, c text, d bigint) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('jsonb_build_object(text, boolean, text, bigint)');
      RETURN pg_catalog.jsonb_build_object(a, b, c, d); END $$;
CREATE FUNCTION public.lpad(t text, n integer, f text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('lpad(text, integer, text)'); RETURN pg_catalog.lpad(t, n, f); END $$;
CREATE FUNCTION public.to_hex(n bigint) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('to_hex(bigint)'); RETURN pg_catalog.to_hex(n); END $$;
CREATE FUNCTION public.encode(b bytea, f text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('encode(bytea, text)'); RETURN pg_catalog.encode(b, f); END $$;
CREATE FUNCTION public.pg_notify(c text, p text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('pg_notify(text, text)'); PERFORM pg_catalog.pg_notify(c, p); END $$;
CREATE FUNCTION public.format_type(t oid, m integer) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('format_type(oid, integer)'); RETURN pg_catalog.format_type(t, m); END $$;
CREATE FUNCTION public.octet_length(t text) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('octet_length(text)'); RETURN pg_catalog.octet_length(t); END $$;
CREATE FUNCTION public.cardinality(a text[]) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('cardinality(text[])'); RETURN pg_catalog.cardinality(a); END $$;
CREATE FUNCTION public.array_position(a text[], e text) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('array_position(text[], text)'); RETURN pg_catalog.array_position(a, e); END $$;
CREATE FUNCTION public.array_ndims(a text[]) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('array_ndims(text[])'); RETURN pg_catalog.array_ndims(a); END $$;
CREATE FUNCTION public.array_to_string(a name[], s text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('array_to_string(name[], text)'); RETURN pg_catalog.array_to_string(a, s); END $$;
CREATE FUNCTION public.jsonb_array_length(j jsonb) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN PERFORM public.regress_hostile_trap('jsonb_array_length(jsonb)'); RETURN pg_catalog.jsonb_array_length(j); END $$;
RESET SESSION AUTHORIZATION;
SELECT count(*) > 40 AS traps_planted FROM pg_proc WHERE proowner = 'regress_hostile_mallory'::regrole;
-- The traps work: a session that puts public before pg_catalog runs them (as
-- itself), for an exact match and for a better one.
SET SESSION AUTHORIZATION regress_hostile_gw;
SET search_path = public, pg_catalog;
SELECT 1::bigint < 2::bigint AS lt, sha256(convert_to('x', 'UTF8')) IS NOT NULL AS hashed;
RESET search_path;
RESET SESSION AUTHORIZATION;
SELECT what, cur, sess, outcome FROM public.regress_hostile_mallory_log ORDER BY 1, 2, 3, 4;
TRUNCATE public.regress_hostile_mallory_log;

-- Every entry point, each called by the role that would call it, with the
-- traps in place.  The extension's owner: tokens, track, untrack.
SELECT synclog.create_token('regress_hostile_m', ARRAY['ga']) AS tok2 \gset
SELECT synclog.revoke_token(synclog.create_token('regress_hostile_r', ARRAY['ga']));
SELECT synclog.untrack('hostile.plain');
SELECT synclog.track('hostile.plain', 'g');
-- (a clock just ahead of the server's, so that the update below wins over
-- the server's capture of the existing rows and is written)
SELECT pg_catalog.lpad(pg_catalog.to_hex(synclog._hlc_now() OPERATOR(pg_catalog.+) 1), 16, '0') AS hnow \gset
-- The gateway: authenticate, push (insert, update, delete of existing rows,
-- a new row of a uuid-keyed table, a duplicate op), push_hash, snapshots,
-- changes, cursor, tables.
SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT subject, groups, can_write FROM synclog.authenticate(:'tok2');
SELECT subject FROM synclog.authenticate_hash(pg_catalog.sha256(pg_catalog.convert_to(:'tok2', 'UTF8')));
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok2', 'hostile', replace($$[
    {"id": "e0000000-0000-0000-0000-000000000041", "table": "plain", "row": "3", "kind": "upsert",
     "fields": {"g": "ga", "v": "three"}, "hlc": "0000000000010000"},
    {"id": "e0000000-0000-0000-0000-000000000042", "table": "plain", "row": "1", "kind": "upsert",
     "fields": {"v": "uno"}, "hlc": "HNOW"},
    {"id": "e0000000-0000-0000-0000-000000000043", "table": "plain", "row": "2", "kind": "delete",
     "hlc": "0000000000010000"},
    {"id": "e0000000-0000-0000-0000-000000000044", "table": "moods", "row": "00000000-0000-0000-0000-00000000000d",
     "kind": "upsert", "fields": {"g": "ga", "m": "happy"}, "hlc": "0000000000010000"},
    {"id": "e0000000-0000-0000-0000-000000000045", "table": "plain", "row": "9", "kind": "delete",
     "hlc": "0000000000010000"},
    {"id": "e0000000-0000-0000-0000-000000000046", "table": "items", "row": "7", "kind": "upsert",
     "fields": {"g": "gb", "n": 7}, "hlc": "0000000000010000"}]$$, 'HNOW', :'hnow')::jsonb) r;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected FROM synclog.push(:'tok2', 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000041", "table": "plain", "row": "3", "kind": "upsert",
     "fields": {"g": "ga", "v": "three"}, "hlc": "0000000000010000"}]$$) r;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push_hash(pg_catalog.sha256(pg_catalog.convert_to(:'tok2', 'UTF8')), 'hostile', $$[
    {"id": "e0000000-0000-0000-0000-000000000047", "table": "plain", "row": "3", "kind": "upsert",
     "fields": {"v": "tres"}, "hlc": "0000000000020000"}]$$) r;
SELECT jsonb_array_length(synclog.snapshot(ARRAY['ga']) -> 'rows') > 0 AS snapshot_ok;
SELECT jsonb_array_length(synclog.snapshot_page(ARRAY['ga'], NULL, NULL, 2) -> 'rows') AS page_rows;
SELECT jsonb_array_length(synclog.snapshot_page(ARRAY['ga'], NULL, NULL, 100, 1) -> 'rows') AS small_page_rows;
SELECT synclog.snapshot_page(ARRAY['nobody'], NULL, NULL, 10) - 'cursor' AS empty_page;
SELECT synclog.cursor() >= :c0 AS cursor_ok;
SELECT synclog.tables() -> 'plain' AS plain;
RESET SESSION AUTHORIZATION;
-- The app writes its table directly (captured).
SET SESSION AUTHORIZATION regress_hostile_app;
INSERT INTO hostile.plain VALUES (4, 'ga', 'four');
UPDATE hostile.plain SET v = 'cuatro' WHERE id = 4;
DELETE FROM hostile.plain WHERE id = 4;
RESET SESSION AUTHORIZATION;
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT synclog.compact() >= 0 AS compacted;
SET SESSION AUTHORIZATION regress_hostile_gw;
SELECT c ->> 'table' AS tbl, c ->> 'row' AS row, c ->> 'kind' AS kind, c -> 'fields' AS fields
  FROM jsonb_array_elements(synclog.changes(ARRAY['ga'], :c0, 1000) -> 'changes') c
 WHERE c ->> 'table' = 'plain' ORDER BY (c ->> 'seq')::bigint;
RESET SESSION AUTHORIZATION;
SELECT * FROM hostile.plain ORDER BY id;

-- mallory's code never ran: her log is empty.
SELECT what, cur, sess, outcome FROM public.regress_hostile_mallory_log ORDER BY 1, 2, 3, 4;
-- (the app's code that the batch above ran, as the app)
:showlog

-- No role became a superuser.
SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'regress\_hostile\_%' ORDER BY rolname;

-- Clean up.
SELECT synclog.revoke_token(:'tok');
SELECT synclog.revoke_token(:'tok2');
DROP OWNED BY regress_hostile_mallory;
SELECT synclog.untrack(t) FROM unnest(ARRAY['hostile.items', 'hostile.moods', 'hostile.deferred',
                                              'hostile.plain']::regclass[]) t;
SET client_min_messages = warning;
DROP SCHEMA hostile CASCADE;
RESET client_min_messages;
DROP OWNED BY regress_hostile_app, regress_hostile_gw;
DROP ROLE regress_hostile_app, regress_hostile_gw, regress_hostile_mallory;
SELECT count(*) AS left_over FROM pg_proc WHERE proname LIKE 'regress\_hostile%';
