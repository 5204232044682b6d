--
-- sequencer: a large backlog is sequenced promptly, gap-free.
--
-- Expected: 20,000 ops committed in one transaction, while the planner's
-- statistics say no op is waiting (the steady state), are all numbered,
-- exactly high_water+1 .. high_water+20000, well within the timeout.  (A
-- stamping statement that was quadratic in the backlog took minutes here
-- and never caught up under load.)
--
\set VERBOSITY terse
CREATE TABLE sq_items (id int PRIMARY KEY, g text NOT NULL, n int);
SELECT synclog.track('sq_items', 'g');
SELECT synclog.create_token('sq_user', ARRAY['g1']) AS tok \gset
SELECT synclog.wait_sequenced() AS c0 \gset
ANALYZE synclog.ops;

BEGIN;
SELECT sum(jsonb_array_length(synclog.push(:'tok', 'sq-client',
         (SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'table', 'sq_items',
                                              'row', (b * 1000 + i)::text, 'kind', 'upsert',
                                              'fields', jsonb_build_object('g', 'g1', 'n', i),
                                              'hlc', '0000000000010000'))
            FROM generate_series(1, 1000) i)) -> 'acked')) AS acked
  FROM generate_series(0, 19) b;
COMMIT;

SELECT synclog.wait_sequenced('60s') - :c0 AS newly_sequenced;
SELECT count(*) AS ops, min(seq) - :c0 AS first, max(seq) - :c0 AS last,
       count(DISTINCT seq) AS distinct_seqs
  FROM synclog.ops WHERE table_name = 'sq_items';

SELECT synclog.untrack('sq_items');
DROP TABLE sq_items;
SELECT synclog.revoke_token(:'tok');
