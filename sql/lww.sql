--
-- lww: per-field last-writer-wins.
--
-- Expected: each field takes the value of the op with the greatest
-- (hlc, client_id), client_id compared in byte order; a field an op loses is
-- left alone; the op is still acked and its change carries only the fields
-- it won (none: an empty object).  The outcome does not depend on the order
-- the ops arrive in.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
SELECT synclog.create_token('lw_user', ARRAY['g1']) AS tok \gset
CREATE TABLE lw_items (id int PRIMARY KEY, g text, a text, b text, c text DEFAULT 'default');
SELECT synclog.track('lw_items', 'g');

-- Pushes one op as client cid and shows the reply's codes.
CREATE FUNCTION lw_push(tok text, cid text, row_id int, hlc text, fields jsonb, op_id uuid)
RETURNS TABLE (acked int, rejected jsonb)
LANGUAGE sql AS $$
    SELECT jsonb_array_length(r -> 'acked'), r -> 'rejected'
      FROM synclog.push(tok, cid, jsonb_build_array(jsonb_build_object(
               'id', op_id, 'table', 'lw_items', 'row', row_id::text, 'kind', 'upsert',
               'fields', fields, 'hlc', hlc))) r
$$;
-- Each field's value and the clock that won it.
CREATE FUNCTION lw_state(rid int) RETURNS TABLE (field text, value text, hlc text, client_id text)
LANGUAGE sql AS $$
    SELECT f.key, f.value, m.clocks -> f.key ->> 0, m.clocks -> f.key ->> 1
      FROM lw_items i, jsonb_each_text(to_jsonb(i) - 'id') f, synclog.row_meta m
     WHERE i.id = rid AND m.tbl = 'lw_items'::regclass AND m.row_id = rid::text
     ORDER BY f.key
$$;

SELECT * FROM lw_push(:'tok', 'c1', 1, '0000000000010000', '{"g": "g1", "a": "a1", "b": "b1"}', 'ee000000-0000-0000-0000-000000000001');
SELECT * FROM lw_state(1);

-- A higher clock wins.
SELECT * FROM lw_push(:'tok', 'c2', 1, '0000000000020000', '{"a": "a2"}', 'ee000000-0000-0000-0000-000000000002');
SELECT * FROM lw_state(1);

-- A lower clock loses, whatever the client: the field is left alone.
SELECT * FROM lw_push(:'tok', 'c9', 1, '0000000000018000', '{"a": "lost"}', 'ee000000-0000-0000-0000-000000000003');
SELECT * FROM lw_state(1);

-- Equal clocks: the greater client_id wins, in byte order.
-- b was won by c1 at 0000000000010000; c2 > c1.
SELECT * FROM lw_push(:'tok', 'c2', 1, '0000000000010000', '{"b": "b-by-c2"}', 'ee000000-0000-0000-0000-000000000004');
-- ... and now c1 at the same clock loses to c2.
SELECT * FROM lw_push(:'tok', 'c1', 1, '0000000000010000', '{"b": "b-by-c1"}', 'ee000000-0000-0000-0000-000000000005');
SELECT * FROM lw_state(1);
-- Byte order, not a collation or a number: "c9" > "c10", "a" > "Z", "é" > "z".
SELECT * FROM lw_push(:'tok', 'c10', 1, '0000000000030000', '{"a": "by c10"}', 'ee000000-0000-0000-0000-000000000006');
SELECT * FROM lw_push(:'tok', 'c9', 1, '0000000000030000', '{"a": "by c9"}', 'ee000000-0000-0000-0000-000000000007');
SELECT * FROM lw_push(:'tok', 'c10', 1, '0000000000030000', '{"a": "by c10 again"}', 'ee000000-0000-0000-0000-000000000008');
SELECT value, client_id FROM lw_state(1) WHERE field = 'a';
SELECT * FROM lw_push(:'tok', 'Z', 1, '0000000000040000', '{"a": "by Z"}', 'ee000000-0000-0000-0000-000000000009');
SELECT * FROM lw_push(:'tok', 'a', 1, '0000000000040000', '{"a": "by a"}', 'ee000000-0000-0000-0000-00000000000a');
SELECT * FROM lw_push(:'tok', 'Z', 1, '0000000000040000', '{"a": "by Z again"}', 'ee000000-0000-0000-0000-00000000000b');
SELECT value, client_id FROM lw_state(1) WHERE field = 'a';
SELECT * FROM lw_push(:'tok', 'z', 1, '0000000000050000', '{"a": "by z"}', 'ee000000-0000-0000-0000-00000000000c');
SELECT * FROM lw_push(:'tok', 'é', 1, '0000000000050000', '{"a": "by é"}', 'ee000000-0000-0000-0000-00000000000d');
SELECT * FROM lw_push(:'tok', 'z', 1, '0000000000050000', '{"a": "by z again"}', 'ee000000-0000-0000-0000-00000000000e');
SELECT value, client_id FROM lw_state(1) WHERE field = 'a';

-- One op winning some fields and losing others: a is at 0000000000050000,
-- b at 0000000000010000, c (a default) has no clock, so any op wins it.
SELECT * FROM lw_push(:'tok', 'c3', 1, '0000000000030000', '{"a": "lost", "b": "won", "c": "won too"}', 'ee000000-0000-0000-0000-00000000000f');
SELECT * FROM lw_state(1);
-- Even the lowest clock wins a field that never had one.
SELECT * FROM lw_push(:'tok', 'c4', 2, '0000000000010000', '{"g": "g1", "a": "two"}', 'ee000000-0000-0000-0000-000000000010');
SELECT * FROM lw_push(:'tok', 'c4', 2, '0000000000000001', '{"c": "oldest"}', 'ee000000-0000-0000-0000-000000000011');
SELECT * FROM lw_state(2);

-- Order does not matter: the same three ops in two orders give the same row.
SELECT * FROM lw_push(:'tok', 'cx', 10, '0000000000010000', '{"g": "g1", "a": "x", "b": "x"}', 'ee000000-0000-0000-0000-000000000020');
SELECT * FROM lw_push(:'tok', 'cy', 10, '0000000000030000', '{"a": "y", "c": "y"}', 'ee000000-0000-0000-0000-000000000021');
SELECT * FROM lw_push(:'tok', 'cz', 10, '0000000000020000', '{"a": "z", "b": "z", "c": "z"}', 'ee000000-0000-0000-0000-000000000022');
SELECT * FROM lw_push(:'tok', 'cx', 11, '0000000000010000', '{"g": "g1", "a": "x", "b": "x"}', 'ee000000-0000-0000-0000-000000000023');
SELECT * FROM lw_push(:'tok', 'cz', 11, '0000000000020000', '{"a": "z", "b": "z", "c": "z"}', 'ee000000-0000-0000-0000-000000000024');
SELECT * FROM lw_push(:'tok', 'cy', 11, '0000000000030000', '{"a": "y", "c": "y"}', 'ee000000-0000-0000-0000-000000000025');
SELECT * FROM lw_state(10);
SELECT (SELECT array_agg(s ORDER BY s) FROM lw_state(10) s) = (SELECT array_agg(s ORDER BY s) FROM lw_state(11) s) AS converged;

-- Changes carry only the fields each op won, with the op's clock.
SELECT synclog.wait_sequenced() > :c0 AS sequenced;
SELECT (c->>'seq')::bigint - :c0 AS seq, c->>'client_id' AS client_id, c->>'row' AS row,
       c->>'hlc' AS hlc, c->'fields' AS fields
  FROM jsonb_array_elements(synclog.changes(ARRAY['g1'], :c0, 100) -> 'changes') c;
-- The snapshot agrees with the table and the clocks.
SELECT s->'fields' AS fields, s->'clocks' AS clocks
  FROM jsonb_array_elements(synclog.snapshot(ARRAY['g1']) -> 'rows') s
 WHERE s->>'table' = 'lw_items' AND s->>'row' = '1';

-- Clean up.
SELECT synclog.untrack('lw_items');
DROP TABLE lw_items;
DROP FUNCTION lw_push(text, text, int, text, jsonb, uuid);
DROP FUNCTION lw_state(int);
SELECT synclog.revoke_token(:'tok');
