--
-- tokens: create_token, authenticate, revoke_token.
--
-- Expected: a token is "slt_" and 64 lowercase hex digits, different each
-- time; only its SHA-256 is stored; authenticate returns the grant (groups
-- sorted, without duplicates) and no row for an unknown or revoked token;
-- revoking takes effect at once, for push too; bad arguments raise errors.
--
\set VERBOSITY terse
SELECT synclog.wait_sequenced() AS c0 \gset
CREATE TABLE tk_items (id int PRIMARY KEY, g text, title text);
SELECT synclog.track('tk_items', 'g');

SELECT synclog.create_token('tk_alice', ARRAY['g2', 'g1', 'g2']) AS tok \gset
SELECT synclog.create_token('tk_alice', ARRAY['g1']) AS tok2 \gset
SELECT synclog.create_token('tk_reader', ARRAY['g1'], false) AS tok_ro \gset

-- Shape and randomness.
SELECT :'tok' ~ '^slt_[0-9a-f]{64}$' AS shape_ok, length(:'tok') AS length,
       :'tok' <> :'tok2' AS differ, :'tok_ro' ~ '^slt_[0-9a-f]{64}$' AS ro_shape_ok;

-- Only the SHA-256 is stored: the token's text, or its random part, appears
-- nowhere in synclog.tokens.
SELECT count(*) AS hashed_rows FROM synclog.tokens
 WHERE token_hash IN (sha256(convert_to(:'tok', 'UTF8')), sha256(convert_to(:'tok2', 'UTF8')),
                      sha256(convert_to(:'tok_ro', 'UTF8')));
SELECT count(*) AS leaks FROM synclog.tokens t
 WHERE t::text LIKE '%' || substr(:'tok', 5, 16) || '%'
    OR t::text LIKE '%' || substr(:'tok2', 5, 16) || '%'
    OR encode(t.token_hash, 'hex') LIKE '%' || substr(:'tok', 5, 16) || '%';
SELECT subject, groups, can_write, revoked_at IS NULL AS live FROM synclog.tokens
 WHERE token_hash = sha256(convert_to(:'tok', 'UTF8'));

-- authenticate returns the grant.
SELECT * FROM synclog.authenticate(:'tok');
SELECT * FROM synclog.authenticate(:'tok2');
SELECT * FROM synclog.authenticate(:'tok_ro');
-- ... and no row for an unknown token, a near miss, NULL or the empty string.
SELECT count(*) AS rows FROM synclog.authenticate('slt_0000000000000000000000000000000000000000000000000000000000000000');
SELECT count(*) AS rows FROM synclog.authenticate(upper(:'tok'));
SELECT count(*) AS rows FROM synclog.authenticate(:'tok' || ' ');
SELECT count(*) AS rows FROM synclog.authenticate(NULL);
SELECT count(*) AS rows FROM synclog.authenticate('');

-- The token works for push.
SELECT r -> 'acked' AS acked, r -> 'rejected' AS rejected
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "70000000-0000-0000-0000-000000000001", "table": "tk_items", "row": "1", "kind": "upsert",
     "fields": {"g": "g1", "title": "before revoke"}, "hlc": "0000000000010000"}]$$) r;

-- Revoke: authenticate returns no row, and push refuses at once, in the
-- same transaction as the revoke too.
BEGIN;
SELECT synclog.revoke_token(:'tok');
SELECT count(*) AS rows FROM synclog.authenticate(:'tok');
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes, r -> 'acked' AS acked
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "70000000-0000-0000-0000-000000000002", "table": "tk_items", "row": "1", "kind": "upsert",
     "fields": {"title": "after revoke"}, "hlc": "0000000000020000"}]$$) r;
COMMIT;
SELECT count(*) AS rows FROM synclog.authenticate(:'tok');
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "70000000-0000-0000-0000-000000000003", "table": "tk_items", "row": "1", "kind": "delete",
     "hlc": "0000000000020000"}]$$) r;
-- even an op it pushed before is no longer acked for it
SELECT jsonb_path_query_array(r, '$.rejected[*].code') AS codes
  FROM synclog.push(:'tok', 'c1', $$[
    {"id": "70000000-0000-0000-0000-000000000001", "table": "tk_items", "row": "1", "kind": "upsert",
     "fields": {"g": "g1", "title": "before revoke"}, "hlc": "0000000000010000"}]$$) r;
SELECT title FROM tk_items;
-- The subject's other token still works.
SELECT count(*) AS rows FROM synclog.authenticate(:'tok2');
-- The row stays, marked revoked; revoking again is harmless.
SELECT subject, revoked_at IS NOT NULL AS revoked FROM synclog.tokens
 WHERE token_hash = sha256(convert_to(:'tok', 'UTF8'));
SELECT synclog.revoke_token(:'tok');
SELECT count(*) AS rows FROM synclog.authenticate(:'tok');

-- Revoking an unknown token, or NULL, is an error.
SELECT synclog.revoke_token('slt_0000000000000000000000000000000000000000000000000000000000000000');
SELECT synclog.revoke_token('');
SELECT synclog.revoke_token(NULL);

-- create_token argument errors.
SELECT synclog.create_token('', ARRAY['g1']);
SELECT synclog.create_token(NULL, ARRAY['g1']);
SELECT synclog.create_token('tk_x', ARRAY[]::text[]);
SELECT synclog.create_token('tk_x', NULL);
SELECT synclog.create_token('tk_x', ARRAY['g1', NULL]);
SELECT synclog.create_token('tk_x', ARRAY['g1', '']);
SELECT synclog.create_token('tk_x', ARRAY[['g1', 'g2'], ['g3', 'g4']]);
SELECT synclog.create_token('tk_x', ARRAY['g1'], NULL);
-- none of them made a token
SELECT count(*) AS made FROM synclog.tokens WHERE subject = 'tk_x';

-- Clean up.
SELECT synclog.revoke_token(:'tok2');
SELECT synclog.revoke_token(:'tok_ro');
SELECT synclog.untrack('tk_items');
DROP TABLE tk_items;
