--
-- key_aliasing: a row id names exactly one row (issue 14, findings 4-5).
--
-- A row id is the text form of the primary key, and a group the text of the
-- group column.  Expected: track() refuses, with a DETAIL and a HINT, every
-- key or group column whose type or collation lets two different texts name
-- one value, or whose text depends on the session's settings (citext,
-- numeric, a nondeterministic collation, char(n), timestamptz, timestamp,
-- date, float8, bytea, json, a domain); uuid, smallint, integer, bigint, and
-- text and varchar with a deterministic collation are accepted.  For an
-- accepted key, every spelling of an id either is refused invalid_value or
-- names exactly the row its value is: a token of group gb cannot delete or
-- change a row of group ga by spelling its id another way, and leaves no
-- tombstone on it that would absorb ga's later ops.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS citext;
DROP COLLATION IF EXISTS regress_keys_ci;
RESET client_min_messages;
CREATE COLLATION regress_keys_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE COLLATION regress_keys_icu (provider = icu, locale = 'und');  -- deterministic
CREATE DOMAIN ka_dom AS int CHECK (VALUE > 0);
SELECT 'ALICE' = 'alice' COLLATE regress_keys_ci AS ci_equal;

------------------------------------------------------------------------------
-- Refused key types, each with the reason and what to use instead.
------------------------------------------------------------------------------
CREATE TABLE ka_citext (id citext PRIMARY KEY, g text);
SELECT synclog.track('ka_citext', 'g');
CREATE TABLE ka_numeric (id numeric PRIMARY KEY, g text);
SELECT synclog.track('ka_numeric', 'g');
CREATE TABLE ka_ci_text (id text COLLATE regress_keys_ci PRIMARY KEY, g text);
SELECT synclog.track('ka_ci_text', 'g');
CREATE TABLE ka_ci_varchar (id varchar(20) COLLATE regress_keys_ci PRIMARY KEY, g text);
SELECT synclog.track('ka_ci_varchar', 'g');
CREATE TABLE ka_bpchar (id char(5) PRIMARY KEY, g text);
SELECT synclog.track('ka_bpchar', 'g');
CREATE TABLE ka_tstz (id timestamptz PRIMARY KEY, g text);
SELECT synclog.track('ka_tstz', 'g');
CREATE TABLE ka_ts (id timestamp PRIMARY KEY, g text);
SELECT synclog.track('ka_ts', 'g');
CREATE TABLE ka_date (id date PRIMARY KEY, g text);
SELECT synclog.track('ka_date', 'g');
CREATE TABLE ka_float (id float8 PRIMARY KEY, g text);
SELECT synclog.track('ka_float', 'g');
CREATE TABLE ka_bytea (id bytea PRIMARY KEY, g text);
SELECT synclog.track('ka_bytea', 'g');
-- (json has no equality, so no table has a json primary key: jsonb stands in
-- for it here, and json appears as a group column below)
CREATE TABLE ka_jsonb (id jsonb PRIMARY KEY, g text);
SELECT synclog.track('ka_jsonb', 'g');
CREATE TABLE ka_domain (id ka_dom PRIMARY KEY, g text);
SELECT synclog.track('ka_domain', 'g');

-- Refused group columns: the same rule.
CREATE TABLE ka_g_citext (id int PRIMARY KEY, g citext);
SELECT synclog.track('ka_g_citext', 'g');
CREATE TABLE ka_g_ci (id int PRIMARY KEY, g text COLLATE regress_keys_ci);
SELECT synclog.track('ka_g_ci', 'g');
CREATE TABLE ka_g_ci_varchar (id int PRIMARY KEY, g varchar(10) COLLATE regress_keys_ci);
SELECT synclog.track('ka_g_ci_varchar', 'g');
CREATE TABLE ka_g_numeric (id int PRIMARY KEY, g numeric);
SELECT synclog.track('ka_g_numeric', 'g');
CREATE TABLE ka_g_bpchar (id int PRIMARY KEY, g char(3));
SELECT synclog.track('ka_g_bpchar', 'g');
CREATE TABLE ka_g_json (id int PRIMARY KEY, g json);
SELECT synclog.track('ka_g_json', 'g');

-- None of the refusals registered anything or left a trigger behind.
SELECT count(*) AS tracked FROM synclog.tracked WHERE name LIKE 'ka\_%';
SELECT count(*) AS triggers FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relname LIKE 'ka\_%' AND t.tgname LIKE 'synclog%';

------------------------------------------------------------------------------
-- Accepted key and group types.
------------------------------------------------------------------------------
\set VERBOSITY terse
CREATE TABLE ka_uuid (id uuid PRIMARY KEY, g text NOT NULL, v text);
CREATE TABLE ka_int2 (id smallint PRIMARY KEY, g text NOT NULL, v text);
CREATE TABLE ka_int (id int PRIMARY KEY, g text NOT NULL, v text);
CREATE TABLE ka_int8 (id bigint PRIMARY KEY, g text NOT NULL, v text);
CREATE TABLE ka_text (id text PRIMARY KEY, g text NOT NULL, v text);
CREATE TABLE ka_varchar (id varchar PRIMARY KEY, g varchar NOT NULL, v text);
CREATE TABLE ka_varchar5 (id varchar(5) PRIMARY KEY, g varchar(5) NOT NULL, v text);
CREATE TABLE ka_text_c (id text COLLATE "C" PRIMARY KEY, g text COLLATE "C" NOT NULL, v text);
CREATE TABLE ka_text_icu (id text COLLATE regress_keys_icu PRIMARY KEY, g text NOT NULL, v text);
CREATE TABLE ka_g_int (id uuid PRIMARY KEY, g int NOT NULL, v text);
SELECT t, synclog.track(t, 'g') FROM unnest(ARRAY['ka_uuid', 'ka_int2', 'ka_int', 'ka_int8', 'ka_text',
    'ka_varchar', 'ka_varchar5', 'ka_text_c', 'ka_text_icu', 'ka_g_int']::regclass[]) t;
SELECT k AS tbl, v ->> 'pk' AS pk, v -> 'columns' ->> (v ->> 'pk') AS pk_type,
       v -> 'columns' ->> (v ->> 'group') AS group_type
  FROM jsonb_each(synclog.tables()) e(k, v) WHERE k LIKE 'ka\_%' ORDER BY k;

------------------------------------------------------------------------------
-- Spellings.  Group ga owns one row in each table; a token of gb tries to
-- delete and to change it by every other spelling of its id.
------------------------------------------------------------------------------
SELECT synclog.create_token('ka_a', ARRAY['ga', '7']) AS tok_a \gset
SELECT synclog.create_token('ka_b', ARRAY['gb', '8']) AS tok_b \gset

-- Pushes ops on table tbl, one per row spelling (op ids fresh; upserts carry
-- fields); one line per op: the spelling, the kind, acked or the code.
CREATE FUNCTION ka_push(tok text, tbl text, op_kind text, spellings text[], fields jsonb, hlc text)
RETURNS TABLE (spelling text, kind text, outcome text)
LANGUAGE sql AS $$
    WITH ops AS (
        SELECT n, s, jsonb_build_object('id', gen_random_uuid(), 'table', tbl, 'row', s, 'kind', op_kind,
                                        'hlc', hlc) ||
                     CASE WHEN op_kind = 'upsert' THEN jsonb_build_object('fields', fields) ELSE '{}' END AS op
          FROM unnest(spellings) WITH ORDINALITY u(s, n)),
    r AS MATERIALIZED (
        SELECT synclog.push(tok, 'ka-client', (SELECT jsonb_agg(op ORDER BY n) FROM ops)) AS r)
    SELECT to_json(o.s)::text, op_kind,
           CASE WHEN (SELECT r.r -> 'acked' FROM r) ? (o.op ->> 'id') THEN 'acked'
                ELSE (SELECT x ->> 'code' FROM r, jsonb_array_elements(r.r -> 'rejected') x
                       WHERE x ->> 'id' = o.op ->> 'id') END
      FROM ops o ORDER BY o.n
$$;

-- ga's rows: the uuid one created with an upper-case spelling, stored and
-- named lower-case.
SELECT * FROM ka_push(:'tok_a', 'ka_uuid', 'upsert', ARRAY['ABCDEF00-0000-0000-0000-00000000000A'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_int2', 'upsert', ARRAY['1'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_int', 'upsert', ARRAY['1'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_int8', 'upsert', ARRAY['9007199254740993'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_text', 'upsert', ARRAY['alice'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_varchar', 'upsert', ARRAY['alice'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_varchar5', 'upsert', ARRAY['alice'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_text_c', 'upsert', ARRAY['alice'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_text_icu', 'upsert', ARRAY['alice'], '{"g": "ga", "v": "a"}', '0000000000010000');
SELECT * FROM ka_push(:'tok_a', 'ka_g_int', 'upsert', ARRAY['00000000-0000-0000-0000-000000000007'], '{"g": 7, "v": "a"}', '0000000000010000');

-- Integer keys: spellings of 1 name row 1 (and are refused: it is ga's);
-- the rest are not integers.
\set int_spellings '{1,01,+1," 1","1 "," +0001 ",1.0,1e0,0x1,"1_0",１,2147483649,""}'
SELECT * FROM ka_push(:'tok_b', 'ka_int', 'delete', :'int_spellings', NULL, '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_int', 'upsert', :'int_spellings', '{"v": "b"}', '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_int', 'upsert', ARRAY['01', ' 1'], '{"g": "gb", "v": "b"}', '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_int2', 'delete', ARRAY['1', '01', '+1', ' 1', '65537', '1.0'], NULL, '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_int8', 'delete', ARRAY['9007199254740993', '09007199254740993', '+9007199254740993',
    '9007199254740992', '9007199254740993.0', '9.007199254740993e15'], NULL, '0000000000020000');
-- a row that is not a JSON string is refused as a whole op
SELECT jsonb_path_query_array(synclog.push(:'tok_b', 'ka-client', $$[
    {"id": "ca000000-0000-0000-0000-000000000001", "table": "ka_int", "row": 1, "kind": "delete",
     "hlc": "0000000000020000"}]$$), '$.rejected[*].code') AS codes;

-- Text keys: byte-for-byte, so other spellings are other rows, none of ga's.
\set text_spellings '{alice,ALICE,Alice,"alice "," alice",ａlice}'
-- (an upsert of another spelling is a new row, which needs its group ...)
SELECT * FROM ka_push(:'tok_b', 'ka_text', 'upsert', :'text_spellings', '{"v": "b"}', '0000000000020000');
-- (... and then is gb's own row, 'ALICE', beside ga's 'alice')
SELECT * FROM ka_push(:'tok_b', 'ka_text', 'upsert', ARRAY['ALICE'], '{"g": "gb", "v": "b"}', '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_text', 'delete', :'text_spellings', NULL, '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_varchar', 'delete', :'text_spellings', NULL, '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_text_c', 'delete', :'text_spellings', NULL, '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_text_icu', 'delete', :'text_spellings', NULL, '0000000000020000');
-- varchar(5) drops trailing spaces beyond 5: 'alice   ' is the row 'alice'
SELECT * FROM ka_push(:'tok_b', 'ka_varchar5', 'delete', ARRAY['alice', 'alice ', 'alice     ', 'ALICE', 'alices', ' alice'], NULL, '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_varchar5', 'upsert', ARRAY['alice   '], '{"v": "b"}', '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_varchar5', 'upsert', ARRAY['alice   '], '{"g": "gb", "v": "b"}', '0000000000020000');

-- uuid keys: every spelling uuid accepts is the one row.
SELECT * FROM ka_push(:'tok_b', 'ka_uuid', 'delete', ARRAY[
    'abcdef00-0000-0000-0000-00000000000a', 'ABCDEF00-0000-0000-0000-00000000000A',
    'abcdef0000000000000000000000000a', '{abcdef00-0000-0000-0000-00000000000a}',
    '{ABCDEF0000000000000000000000000A}', 'abcd-ef00-0000-0000-0000-0000-0000-000a',
    ' abcdef00-0000-0000-0000-00000000000a', 'abcdef00-0000-0000-0000-00000000000a ',
    'urn:uuid:abcdef00-0000-0000-0000-00000000000a', 'abcdef00-0000-0000-0000-0000000000a'], NULL, '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_uuid', 'upsert', ARRAY[
    'ABCDEF00-0000-0000-0000-00000000000A', '{abcdef0000000000000000000000000a}'], '{"v": "b"}', '0000000000020000');

-- An integer group column: gb's token (groups gb and 8) cannot create a row
-- in group 7 by spelling it "07" or "+7", nor touch ga's row in group 7.
SELECT * FROM ka_push(:'tok_b', 'ka_g_int', 'upsert', ARRAY['00000000-0000-0000-0000-000000000008'], '{"g": "07", "v": "b"}', '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_g_int', 'upsert', ARRAY['00000000-0000-0000-0000-000000000009'], '{"g": "+7", "v": "b"}', '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_g_int', 'upsert', ARRAY['00000000-0000-0000-0000-00000000000a'], '{"g": 8, "v": "b"}', '0000000000020000');
SELECT * FROM ka_push(:'tok_b', 'ka_g_int', 'delete', ARRAY['00000000-0000-0000-0000-000000000007'], NULL, '0000000000020000');
-- ... while ga's token may spell its own group any way the type reads it
SELECT * FROM ka_push(:'tok_a', 'ka_g_int', 'upsert', ARRAY['00000000-0000-0000-0000-00000000000b'], '{"g": "07", "v": "a"}', '0000000000020000');

-- ga's rows are intact ...
SELECT 'ka_uuid' AS tbl, id::text, g::text, v FROM ka_uuid WHERE g = 'ga'
UNION ALL SELECT 'ka_int2', id::text, g, v FROM ka_int2 WHERE g = 'ga'
UNION ALL SELECT 'ka_int', id::text, g, v FROM ka_int WHERE g = 'ga'
UNION ALL SELECT 'ka_int8', id::text, g, v FROM ka_int8 WHERE g = 'ga'
UNION ALL SELECT 'ka_text', id, g, v FROM ka_text WHERE g = 'ga'
UNION ALL SELECT 'ka_varchar', id, g, v FROM ka_varchar WHERE g = 'ga'
UNION ALL SELECT 'ka_varchar5', id, g, v FROM ka_varchar5 WHERE g = 'ga'
UNION ALL SELECT 'ka_text_c', id, g, v FROM ka_text_c WHERE g = 'ga'
UNION ALL SELECT 'ka_text_icu', id, g, v FROM ka_text_icu WHERE g = 'ga'
UNION ALL SELECT 'ka_g_int', id::text, g::text, v FROM ka_g_int WHERE g = 7
ORDER BY 1, 2;
-- ... their metadata is alive, and gb's tombstones sit on other ids
SELECT tbl::text, to_json(row_id)::text AS row_id, grp, deleted FROM synclog.row_meta
 WHERE tbl::text LIKE 'ka\_%' AND (grp IS DISTINCT FROM 'gb') ORDER BY 1, synclog.row_meta.row_id COLLATE "C";
-- ... and ga's token still writes them.
SELECT * FROM ka_push(:'tok_a', 'ka_uuid', 'upsert', ARRAY['{ABCDEF0000000000000000000000000A}'], '{"v": "a2"}', '0000000000030000');
SELECT * FROM ka_push(:'tok_a', 'ka_int', 'upsert', ARRAY['+01'], '{"v": "a2"}', '0000000000030000');
SELECT * FROM ka_push(:'tok_a', 'ka_int8', 'upsert', ARRAY['9007199254740993'], '{"v": "a2"}', '0000000000030000');
SELECT * FROM ka_push(:'tok_a', 'ka_text', 'upsert', ARRAY['alice'], '{"v": "a2"}', '0000000000030000');
SELECT * FROM ka_push(:'tok_a', 'ka_varchar5', 'upsert', ARRAY['alice '], '{"v": "a2"}', '0000000000030000');
SELECT * FROM ka_push(:'tok_a', 'ka_text_icu', 'upsert', ARRAY['alice'], '{"v": "a2"}', '0000000000030000');
SELECT 'ka_uuid' AS tbl, id::text, v FROM ka_uuid WHERE g = 'ga'
UNION ALL SELECT 'ka_int', id::text, v FROM ka_int WHERE g = 'ga'
UNION ALL SELECT 'ka_int8', id::text, v FROM ka_int8 WHERE g = 'ga'
UNION ALL SELECT 'ka_text', id, v FROM ka_text WHERE g = 'ga'
UNION ALL SELECT 'ka_varchar5', id, v FROM ka_varchar5 WHERE g = 'ga'
UNION ALL SELECT 'ka_text_icu', id, v FROM ka_text_icu WHERE g = 'ga'
ORDER BY 1, 2;

-- Row ids do not depend on the session's settings: the same pushes under
-- other TimeZone, DateStyle and extra_float_digits name the same rows.
SET TimeZone = 'Pacific/Kiritimati';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = 3;
SELECT * FROM ka_push(:'tok_b', 'ka_int', 'delete', ARRAY['01'], NULL, '0000000000040000');
SELECT * FROM ka_push(:'tok_a', 'ka_int', 'upsert', ARRAY[' 1'], '{"v": "a3"}', '0000000000040000');
RESET TimeZone;
RESET DateStyle;
RESET extra_float_digits;
SELECT id, g, v FROM ka_int ORDER BY id;

-- Clean up.
SELECT synclog.untrack(t) FROM unnest(ARRAY['ka_uuid', 'ka_int2', 'ka_int', 'ka_int8', 'ka_text',
    'ka_varchar', 'ka_varchar5', 'ka_text_c', 'ka_text_icu', 'ka_g_int']::regclass[]) t;
SELECT synclog.revoke_token(:'tok_a');
SELECT synclog.revoke_token(:'tok_b');
DROP FUNCTION ka_push(text, text, text, text[], jsonb, text);
DROP TABLE ka_citext, ka_numeric, ka_ci_text, ka_ci_varchar, ka_bpchar, ka_tstz, ka_ts, ka_date,
    ka_float, ka_bytea, ka_jsonb, ka_domain, ka_g_citext, ka_g_ci, ka_g_ci_varchar, ka_g_numeric,
    ka_g_bpchar, ka_g_json, ka_uuid, ka_int2, ka_int, ka_int8, ka_text, ka_varchar, ka_varchar5,
    ka_text_c, ka_text_icu, ka_g_int;
DROP DOMAIN ka_dom;
DROP COLLATION regress_keys_ci;
DROP COLLATION regress_keys_icu;
DROP EXTENSION citext;
