--
-- rejections: every rejection code of DESIGN.md.
--
-- Expected: a refused op is a row in "rejected" with its code and a message,
-- never an ERROR; it changes nothing and leaves no change in the log, and
-- the other ops of its batch still apply.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset

-- One line per op of a reply: acked ids, then rejections with code and message.
CREATE FUNCTION rj_show(r jsonb) RETURNS TABLE (outcome text, id text, code text, message text)
LANGUAGE sql AS $$
    SELECT 'acked', a, NULL, NULL FROM jsonb_array_elements_text(r -> 'acked') a
    UNION ALL
    SELECT 'rejected', x ->> 'id', x ->> 'code', x ->> 'message' FROM jsonb_array_elements(r -> 'rejected') x
$$;

CREATE TABLE rj_parents (id int PRIMARY KEY);
INSERT INTO rj_parents VALUES (1);
CREATE TABLE rj_items (
    id     int PRIMARY KEY,
    team   text NOT NULL,
    title  text,
    n      int CHECK (n > 0),
    parent int REFERENCES rj_parents,
    code   text UNIQUE,
    req    text NOT NULL DEFAULT 'r',
    twice  int GENERATED ALWAYS AS (n * 2) STORED
);
SELECT synclog.track('rj_items', 'team');
SELECT synclog.create_token('rj_one', ARRAY['team1']) AS tok1 \gset
SELECT synclog.create_token('rj_two', ARRAY['team2']) AS tok2 \gset
SELECT synclog.create_token('rj_reader', ARRAY['team1'], false) AS tok_ro \gset
SELECT synclog.create_token('rj_gone', ARRAY['team1']) AS tok_revoked \gset
SELECT synclog.revoke_token(:'tok_revoked');

-- Row 1 in team1 and row 2 in team2, to have something to refuse ops on.
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000001", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"team": "team1", "title": "one", "n": 1}, "hlc": "0000000000010000"}]$$));
SELECT * FROM rj_show(synclog.push(:'tok2', 'c2', $$[
  {"id": "aa000000-0000-0000-0000-000000000002", "table": "rj_items", "row": "2", "kind": "upsert",
   "fields": {"team": "team2", "title": "two", "n": 2}, "hlc": "0000000000010000"}]$$));

-- unauthorized: unknown token, revoked token, group not granted (new row),
-- existing row of another group (upsert and delete).
SELECT * FROM rj_show(synclog.push('slt_0000000000000000000000000000000000000000000000000000000000000000', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000010", "table": "rj_items", "row": "10", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000010000"}]$$));
SELECT * FROM rj_show(synclog.push('', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000011", "table": "rj_items", "row": "11", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000010000"}]$$));
SELECT * FROM rj_show(synclog.push(:'tok_revoked', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000012", "table": "rj_items", "row": "12", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000010000"}]$$));
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000013", "table": "rj_items", "row": "13", "kind": "upsert",
   "fields": {"team": "team2", "title": "not mine"}, "hlc": "0000000000010000"},
  {"id": "aa000000-0000-0000-0000-000000000014", "table": "rj_items", "row": "2", "kind": "upsert",
   "fields": {"title": "hijacked"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000015", "table": "rj_items", "row": "2", "kind": "upsert",
   "fields": {"team": "team1", "title": "moved"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000016", "table": "rj_items", "row": "2", "kind": "delete",
   "hlc": "0000000000020000"}]$$));
SELECT id, team, title FROM rj_items ORDER BY id;

-- read_only: a token made with can_write = false.
SELECT * FROM rj_show(synclog.push(:'tok_ro', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000020", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"title": "read only"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000021", "table": "rj_items", "row": "1", "kind": "delete",
   "hlc": "0000000000020000"}]$$));

-- unknown_table, unknown_column (system and dropped columns included).
ALTER TABLE rj_items ADD COLUMN dropped text;
ALTER TABLE rj_items DROP COLUMN dropped;
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000030", "table": "rj_nothing", "row": "1", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000031", "table": "rj_parents", "row": "1", "kind": "delete",
   "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000032", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"title": "x", "colour": "red"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000033", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"ctid": "(0,1)"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000034", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"dropped": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000035", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"Title": "case matters"}, "hlc": "0000000000020000"}]$$));
SELECT id, title FROM rj_items WHERE id = 1;
SELECT count(*) AS parents FROM rj_parents;

-- invalid_value: a value the column's type does not accept, named by column;
-- a row id that is not a value of the key's type.
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000040", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"n": "many"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000041", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"n": 1.5}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000042", "table": "rj_items", "row": "one", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000043", "table": "rj_items", "row": "one", "kind": "delete",
   "hlc": "0000000000020000"}]$$));

-- invalid_op: each malformed shape.
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  42,
  "aa000000-0000-0000-0000-000000000050",
  {"table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "no id"}, "hlc": "0000000000020000"},
  {"id": 7, "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "not-a-uuid", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-00000000005", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000051", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000052", "table": "", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000053", "table": "rj_items", "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000054", "table": "rj_items", "row": 1, "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000055", "table": "rj_items", "row": "", "kind": "upsert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000056", "table": "rj_items", "row": "1", "kind": "insert", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000057", "table": "rj_items", "row": "1", "kind": "UPSERT", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000058", "table": "rj_items", "row": "1", "fields": {"title": "x"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000059", "table": "rj_items", "row": "1", "kind": "upsert", "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-00000000005a", "table": "rj_items", "row": "1", "kind": "upsert", "fields": [["title", "x"]], "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-00000000005b", "table": "rj_items", "row": "1", "kind": "upsert", "fields": null, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-00000000005c", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}},
  {"id": "aa000000-0000-0000-0000-00000000005d", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "000000000002000"},
  {"id": "aa000000-0000-0000-0000-00000000005e", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "00000000000200000"},
  {"id": "aa000000-0000-0000-0000-00000000005f", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "000000000002000A"},
  {"id": "aa000000-0000-0000-0000-000000000060", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": "000000000002000g"},
  {"id": "aa000000-0000-0000-0000-000000000061", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"title": "x"}, "hlc": 131072},
  {"id": "aa000000-0000-0000-0000-000000000062", "table": "rj_items", "row": "1", "kind": "delete"},
  {"id": "aa000000-0000-0000-0000-000000000063", "table": "rj_items", "row": "30", "kind": "upsert", "fields": {"title": "no group"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000064", "table": "rj_items", "row": "31", "kind": "upsert", "fields": {"team": null}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000065", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"twice": 4}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000066", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"id": 2, "title": "other key"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000067", "table": "rj_items", "row": "1", "kind": "upsert", "fields": {"id": null}, "hlc": "0000000000020000"}
]$$));
SELECT id, team, title, n FROM rj_items ORDER BY id;

-- group_immutable: an op that changes an existing row's group (to another
-- granted group, or to null); giving the same group is fine.
SELECT synclog.create_token('rj_both', ARRAY['team1', 'team2']) AS tok12 \gset
SELECT * FROM rj_show(synclog.push(:'tok12', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000070", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"team": "team2"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000071", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"team": null, "title": "no team"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000072", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"team": "team1", "title": "same team"}, "hlc": "0000000000020000"}]$$));
SELECT id, team, title FROM rj_items WHERE id = 1;

-- row_deleted: once deleted, every later op on the row is refused, whatever
-- its clock.
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-000000000080", "table": "rj_items", "row": "3", "kind": "upsert",
   "fields": {"team": "team1", "title": "short-lived"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-000000000081", "table": "rj_items", "row": "3", "kind": "delete",
   "hlc": "0000000000030000"},
  {"id": "aa000000-0000-0000-0000-000000000082", "table": "rj_items", "row": "3", "kind": "upsert",
   "fields": {"title": "later"}, "hlc": "0000000000040000"},
  {"id": "aa000000-0000-0000-0000-000000000083", "table": "rj_items", "row": "3", "kind": "upsert",
   "fields": {"team": "team1", "title": "earlier"}, "hlc": "0000000000010000"},
  {"id": "aa000000-0000-0000-0000-000000000084", "table": "rj_items", "row": "3", "kind": "delete",
   "hlc": "0000000000050000"}]$$));
SELECT count(*) AS row3 FROM rj_items WHERE id = 3;

-- clock_skew: a clock 5 s ahead passes the default of 1 min, not 2 s; a
-- clock years ahead never passes.  (The message gives milliseconds, which
-- vary: only its shape is shown.)
SELECT lpad(to_hex(((extract(epoch FROM clock_timestamp()) * 1000)::bigint + 5000) << 16), 16, '0') AS ahead5 \gset
SHOW synclog.max_clock_skew;
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok1', 'c1', format($$[
  {"id": "aa000000-0000-0000-0000-000000000090", "table": "rj_items", "row": "4", "kind": "upsert",
   "fields": {"team": "team1", "title": "5 s ahead"}, "hlc": "%s"}]$$, :'ahead5')::jsonb) r;
SET synclog.max_clock_skew = '2s';
SELECT x ->> 'id' AS id, x ->> 'code' AS code,
       x ->> 'message' ~ '^the op''s clock is \d+ ms ahead of the server''s; synclog.max_clock_skew is 2000 ms$' AS message_ok
  FROM synclog.push(:'tok1', 'c1', format($$[
  {"id": "aa000000-0000-0000-0000-000000000091", "table": "rj_items", "row": "5", "kind": "upsert",
   "fields": {"team": "team1", "title": "5 s ahead"}, "hlc": "%s"},
  {"id": "aa000000-0000-0000-0000-000000000092", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"title": "far future"}, "hlc": "ffffffffffff0000"},
  {"id": "aa000000-0000-0000-0000-000000000093", "table": "rj_items", "row": "1", "kind": "delete",
   "hlc": "ffffffffffffffff"}]$$, :'ahead5')::jsonb) r,
       jsonb_array_elements(r -> 'rejected') x;
RESET synclog.max_clock_skew;
SELECT id, title FROM rj_items WHERE id IN (1, 4, 5) ORDER BY id;

-- constraint_violation: NOT NULL, CHECK, FOREIGN KEY, UNIQUE on another
-- column, each refusing its op alone while the rest of the batch applies.
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-0000000000a0", "table": "rj_items", "row": "6", "kind": "upsert",
   "fields": {"team": "team1", "title": "first of batch", "code": "A"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000a1", "table": "rj_items", "row": "7", "kind": "upsert",
   "fields": {"team": "team1", "req": null}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000a2", "table": "rj_items", "row": "6", "kind": "upsert",
   "fields": {"req": null}, "hlc": "0000000000030000"},
  {"id": "aa000000-0000-0000-0000-0000000000a3", "table": "rj_items", "row": "8", "kind": "upsert",
   "fields": {"team": "team1", "n": -1}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000a4", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"parent": 99}, "hlc": "0000000000030000"},
  {"id": "aa000000-0000-0000-0000-0000000000a5", "table": "rj_items", "row": "9", "kind": "upsert",
   "fields": {"team": "team1", "code": "A"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000a6", "table": "rj_items", "row": "1", "kind": "upsert",
   "fields": {"parent": 1, "title": "last of batch"}, "hlc": "0000000000030000"}]$$));
SELECT id, team, title, n, parent, code, req FROM rj_items ORDER BY id;
-- the refused new rows left no metadata behind: they can be created later
SELECT row_id FROM synclog.row_meta WHERE tbl = 'rj_items'::regclass ORDER BY row_id::int;
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-0000000000a7", "table": "rj_items", "row": "7", "kind": "upsert",
   "fields": {"team": "team1", "title": "seven after all"}, "hlc": "0000000000020000"}]$$));

-- batch_too_large: every op of a batch over synclog.max_batch_ops is refused.
SET synclog.max_batch_ops = 2;
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-0000000000b0", "table": "rj_items", "row": "20", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000b1", "table": "rj_items", "row": "21", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000b2", "table": "rj_items", "row": "22", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000020000"}]$$));
SELECT count(*) AS rows_20_to_22 FROM rj_items WHERE id BETWEEN 20 AND 22;
-- two ops are fine
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-0000000000b0", "table": "rj_items", "row": "20", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000b1", "table": "rj_items", "row": "21", "kind": "upsert",
   "fields": {"team": "team1"}, "hlc": "0000000000020000"}]$$));
RESET synclog.max_batch_ops;

-- Refused ops never reach the change stream; applied ones do, once each.
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT c->>'op_id' AS op_id, c->>'row' AS row, c->>'kind' AS kind
  FROM jsonb_array_elements(synclog.changes(ARRAY['team1', 'team2'], :c0, 1000) -> 'changes') c
 ORDER BY (c->>'seq')::bigint;

-- Refusals carry nothing of a group the token does not hold: team2's op
-- that collides with team1's unique email or overlapping slot is told which
-- constraint refused it, not team1's values; an op on team1's row is not
-- told the row's group.  A value the column's type refuses is invalid_value
-- whatever SQLSTATE its input function raises (tsvector: a syntax error).
CREATE TABLE rj_secret (
    id    int PRIMARY KEY,
    team  text NOT NULL,
    email text UNIQUE,
    slot  int4range,
    doc   tsvector,
    EXCLUDE USING gist (slot WITH &&)
);
SELECT synclog.track('rj_secret', 'team');
SELECT * FROM rj_show(synclog.push(:'tok1', 'c1', $$[
  {"id": "aa000000-0000-0000-0000-0000000000c0", "table": "rj_secret", "row": "1", "kind": "upsert",
   "fields": {"team": "team1", "email": "alice@team1.example", "slot": "[10,20)"}, "hlc": "0000000000020000"}]$$));
SELECT * FROM rj_show(synclog.push(:'tok2', 'c2', $$[
  {"id": "aa000000-0000-0000-0000-0000000000c1", "table": "rj_secret", "row": "2", "kind": "upsert",
   "fields": {"team": "team2", "email": "alice@team1.example"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000c2", "table": "rj_secret", "row": "3", "kind": "upsert",
   "fields": {"team": "team2", "slot": "[15,16)"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000c3", "table": "rj_secret", "row": "1", "kind": "upsert",
   "fields": {"email": "mallory@team2.example"}, "hlc": "0000000000030000"},
  {"id": "aa000000-0000-0000-0000-0000000000c4", "table": "rj_secret", "row": "1", "kind": "delete",
   "hlc": "0000000000030000"},
  {"id": "aa000000-0000-0000-0000-0000000000c5", "table": "rj_secret", "row": "4", "kind": "upsert",
   "fields": {"team": "team2", "doc": "'unterminated"}, "hlc": "0000000000020000"},
  {"id": "aa000000-0000-0000-0000-0000000000c6", "table": "rj_secret", "row": "5", "kind": "upsert",
   "fields": {"team": "team2", "doc": "fat cat"}, "hlc": "0000000000020000"}]$$));
SELECT id, team, email, slot, doc FROM rj_secret ORDER BY id;
SELECT synclog.untrack('rj_secret');
DROP TABLE rj_secret;

-- Clean up.
SELECT synclog.untrack('rj_items');
DROP TABLE rj_items, rj_parents;
DROP FUNCTION rj_show(jsonb);
SELECT synclog.revoke_token(t) FROM unnest(ARRAY[:'tok1', :'tok2', :'tok_ro', :'tok12']) t;
