/*
 * synclog 1.0: the op log, per-field clocks and tombstones, tokens, and the
 * SQL surface of DESIGN.md.
 *
 * Words (as in DESIGN.md): an *op* is one client change to one row; once
 * applied it is a row of synclog.ops, its *change*, which the sequencer
 * worker numbers with a gap-free *seq* in commit order.  The *cursor* is the
 * highest seq a reader has covered.  *Groups* scope rows and tokens.
 *
 * Everything the application can see lives in schema synclog; the tables are
 * not meant to be written by hand.  Functions that touch the tables are
 * SECURITY DEFINER with a fixed search_path, so the gateway's role needs only
 * EXECUTE (granted to synclog_gateway below) and no rights on the tables.
 */

\echo Use "CREATE EXTENSION synclog" to load this file. \quit

-- Tracked tables.  `name` is the table's name on the wire; it is unique even
-- when two schemas hold tables of the same name.
CREATE TABLE synclog.tracked (
    tbl          regclass PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    pk_column    name NOT NULL,
    group_column name NOT NULL
);

-- The op log.  seq is NULL until the sequencer stamps it; local_id orders
-- ops within one sequencer pass (it is taken after the row lock, so two ops
-- on one row are numbered in the order they were applied).
CREATE TABLE synclog.ops (
    op_id      uuid NOT NULL UNIQUE,
    local_id   bigserial NOT NULL,
    seq        bigint UNIQUE,
    table_name text NOT NULL,
    row_id     text NOT NULL,
    grp        text,
    kind       text NOT NULL CHECK (kind IN ('upsert', 'delete')),
    fields     jsonb NOT NULL,
    hlc        bigint NOT NULL,
    client_id  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ops_unstamped ON synclog.ops (local_id) WHERE seq IS NULL;

-- Ids of ops removed by compaction: pushing one of them again must still be
-- a no-op, however late it comes.
CREATE TABLE synclog.compacted_ops (
    op_id uuid PRIMARY KEY
);

-- Per-row metadata: the row's group, the clock that last won each field
-- ({"col": ["<hlc>", "<client_id>"]}), and the tombstone.  A row deleted
-- before the server ever saw it has no group: tomb_groups then holds the
-- groups of the token that deleted it, and the tombstone absorbs only a
-- creation in one of those groups (a delete without rights absorbs nothing).
CREATE TABLE synclog.row_meta (
    tbl         regclass NOT NULL,
    row_id      text NOT NULL,
    grp         text,
    clocks      jsonb NOT NULL DEFAULT '{}',
    deleted     boolean NOT NULL DEFAULT false,
    tomb_groups text[],
    PRIMARY KEY (tbl, row_id)
);

-- Bearer tokens; only the SHA-256 of a token is kept.
CREATE TABLE synclog.tokens (
    token_hash bytea PRIMARY KEY,
    subject    text NOT NULL,
    groups     text[] NOT NULL,
    can_write  boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- The sequencer's durable state: one row.
CREATE TABLE synclog.state (
    one               boolean PRIMARY KEY DEFAULT true CHECK (one),
    high_water        bigint NOT NULL DEFAULT 0,
    compacted_through bigint NOT NULL DEFAULT 0,
    hlc_floor         bigint NOT NULL DEFAULT 0
);
INSERT INTO synclog.state DEFAULT VALUES;

SELECT pg_catalog.pg_extension_config_dump('synclog.tracked', '');
SELECT pg_catalog.pg_extension_config_dump('synclog.ops', '');
SELECT pg_catalog.pg_extension_config_dump('synclog.compacted_ops', '');
SELECT pg_catalog.pg_extension_config_dump('synclog.row_meta', '');
SELECT pg_catalog.pg_extension_config_dump('synclog.tokens', '');
SELECT pg_catalog.pg_extension_config_dump('synclog.state', '');

-- The role meant for gateways: EXECUTE on what a gateway calls, nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'synclog_gateway') THEN
        CREATE ROLE synclog_gateway NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA synclog TO synclog_gateway;

------------------------------------------------------------------------------
-- Internal C functions
------------------------------------------------------------------------------

CREATE FUNCTION synclog._hlc_now() RETURNS bigint
    AS 'MODULE_PATHNAME', 'synclog_hlc_now' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION synclog._random_token() RETURNS text
    AS 'MODULE_PATHNAME', 'synclog_random_token' LANGUAGE C VOLATILE STRICT;

-- SECURITY DEFINER: whoever may write the table may have it captured,
-- without rights on schema synclog.
CREATE FUNCTION synclog._capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'synclog_capture' LANGUAGE C
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION synclog._refuse_truncate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'synclog_refuse_truncate' LANGUAGE C;

CREATE FUNCTION synclog._capture_existing(regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'synclog_capture_existing' LANGUAGE C VOLATILE STRICT;

-- A row of a tracked table as JSON, rendered as the table's owner.
CREATE FUNCTION synclog._row_jsonb(tbl regclass, r record) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'synclog_row_jsonb' LANGUAGE C STABLE STRICT;

-- Why a column cannot be a key or group column of a tracked table, or NULL.
CREATE FUNCTION synclog._key_problem(tbl regclass, col name) RETURNS text
    AS 'MODULE_PATHNAME', 'synclog_key_problem' LANGUAGE C STABLE STRICT;

-- Locks a tracked table for reading; false, with a WARNING saying why, when
-- it can no longer be read safely (util.c).
CREATE FUNCTION synclog._readable(tbl regclass, name text, pk name, grp name) RETURNS bool
    AS 'MODULE_PATHNAME', 'synclog_readable' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION synclog._start_sequencer() RETURNS void
    AS 'MODULE_PATHNAME', 'synclog_start_sequencer' LANGUAGE C VOLATILE;

-- Starts this database's sequencer if none runs (cheap when one does).
CREATE FUNCTION synclog._ensure_sequencer() RETURNS void
    AS 'MODULE_PATHNAME', 'synclog_ensure_sequencer' LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION synclog._hlc_now(), synclog._random_token(),
    synclog._row_jsonb(regclass, record), synclog._key_problem(regclass, name),
    synclog._readable(regclass, text, name, name),
    synclog._capture_existing(regclass), synclog._start_sequencer(),
    synclog._ensure_sequencer() FROM PUBLIC;

------------------------------------------------------------------------------
-- track / untrack
------------------------------------------------------------------------------

CREATE FUNCTION synclog.track(tbl regclass, group_column name) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind     "char";
    pk_cols  name[];
    grp_att  int2;
    existing synclog.tracked;
    clash    regclass;
    problem  text;
    deferred text;
BEGIN
    IF tbl IS NULL OR group_column IS NULL THEN
        RAISE EXCEPTION 'synclog.track needs a table and a group column'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = tbl;
    IF kind = 'p' THEN
        RAISE EXCEPTION 'cannot track partitioned table "%"', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'synclog tracks ordinary tables; writes routed to partitions would bypass it.',
                  HINT = 'Track an ordinary table.';
    ELSIF kind <> 'r' THEN
        RAISE EXCEPTION '"%" is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'synclog tracks ordinary tables only.';
    END IF;

    SELECT array_agg(a.attname ORDER BY a.attnum) INTO pk_cols
      FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = tbl AND i.indisprimary;
    IF pk_cols IS NULL THEN
        RAISE EXCEPTION 'table "%" has no primary key', tbl
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'synclog needs a single-column primary key, e.g. "id uuid PRIMARY KEY".';
    ELSIF cardinality(pk_cols) <> 1 THEN
        RAISE EXCEPTION 'table "%" has a primary key of % columns', tbl, cardinality(pk_cols)
            USING ERRCODE = 'invalid_table_definition',
                  DETAIL = format('The primary key is (%s).', array_to_string(pk_cols, ', ')),
                  HINT = 'synclog needs a single-column primary key; add a surrogate key such as "id uuid".';
    END IF;

    SELECT a.attnum INTO grp_att FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = group_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF grp_att IS NULL THEN
        RAISE EXCEPTION 'column "%" of table "%" does not exist', group_column, tbl
            USING ERRCODE = 'undefined_column',
                  HINT = 'The group column names the sync group of each row, e.g. a team id.';
    END IF;

    -- A row id is the key's text: it must name exactly the row the table's
    -- equality finds, whatever the session's settings (util.c says which
    -- types do).  The same holds for the group, which tokens grant by text.
    problem := synclog._key_problem(tbl, pk_cols[1]);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'cannot track table "%": its primary key "%" cannot name rows', tbl, pk_cols[1]
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('The key''s %s.', problem),
                  HINT = 'Use a key of type uuid, smallint, integer, bigint, or text or varchar with a deterministic collation.';
    END IF;
    problem := synclog._key_problem(tbl, group_column);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'cannot track table "%": its group column "%" cannot name groups', tbl, group_column
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('The group column''s %s.', problem),
                  HINT = 'Use a group column of type uuid, smallint, integer, bigint, or text or varchar with a deterministic collation.';
    END IF;

    SELECT * INTO existing FROM synclog.tracked t WHERE t.tbl = track.tbl;
    IF FOUND THEN
        IF existing.group_column = track.group_column THEN
            RAISE NOTICE 'table "%" is already tracked', tbl;
            RETURN;
        END IF;
        RAISE EXCEPTION 'table "%" is already tracked with group column "%"', tbl, existing.group_column
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Call synclog.untrack first to change the group column.';
    END IF;

    SELECT t.tbl INTO clash FROM synclog.tracked t
      JOIN pg_class c ON c.oid = track.tbl
     WHERE t.name = c.relname;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'a tracked table is already named "%"', (SELECT relname FROM pg_class WHERE oid = tbl)
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('Table %s is tracked under that name; clients know tables by name alone.', clash);
    END IF;

    INSERT INTO synclog.tracked (tbl, name, pk_column, group_column)
    SELECT track.tbl, c.relname, pk_cols[1], track.group_column
      FROM pg_class c WHERE c.oid = track.tbl;

    EXECUTE format('CREATE TRIGGER synclog_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION synclog._capture()', tbl);
    EXECUTE format('CREATE TRIGGER synclog_refuse_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION synclog._refuse_truncate()', tbl);

    -- Rows already in the table enter the change stream as server writes.
    PERFORM synclog._capture_existing(tbl);

    -- Pushed rows are written with the owner's rights, which end with the
    -- op: PostgreSQL cannot carry a check deferred to commit past that, so
    -- such a constraint refuses the pushes that would queue it.
    SELECT string_agg(DISTINCT quote_ident(coalesce(con.conname, tg.tgname)), ', ') INTO deferred
      FROM pg_trigger tg LEFT JOIN pg_constraint con ON con.oid = tg.tgconstraint
     WHERE tg.tgrelid = tbl AND tg.tginitdeferred AND tg.tgenabled <> 'D';
    IF deferred IS NOT NULL THEN
        RAISE WARNING 'table "%" has constraints checked at commit: %', tbl, deferred
            USING DETAIL = 'synclog writes a pushed row with the table owner''s rights, which end with the op, and PostgreSQL cannot defer a check past that: a push that would queue such a check is refused (constraint_violation). Direct writes are not affected.',
                  HINT = 'Declare them DEFERRABLE INITIALLY IMMEDIATE or NOT DEFERRABLE (for a foreign key: ALTER TABLE ... ALTER CONSTRAINT ... DEFERRABLE INITIALLY IMMEDIATE).';
    END IF;
END
$$;

CREATE FUNCTION synclog.untrack(tbl regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'synclog.untrack needs a table' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM synclog.tracked t WHERE t.tbl = untrack.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table "%" is not tracked', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'synclog.tables() lists the tracked tables.';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS synclog_capture ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS synclog_refuse_truncate ON %s', tbl);
    DELETE FROM synclog.row_meta m WHERE m.tbl = untrack.tbl;
END
$$;

------------------------------------------------------------------------------
-- Tokens
------------------------------------------------------------------------------

CREATE FUNCTION synclog.create_token(subject text, groups text[], can_write bool DEFAULT true)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text;
BEGIN
    IF subject IS NULL OR subject = '' THEN
        RAISE EXCEPTION 'a token needs a non-empty subject' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The subject names who holds the token, e.g. a user id.';
    END IF;
    IF groups IS NULL OR cardinality(groups) = 0 THEN
        RAISE EXCEPTION 'a token needs at least one group' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_ndims(groups) <> 1 THEN
        RAISE EXCEPTION 'token groups must be a one-dimensional array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(groups, NULL) IS NOT NULL OR array_position(groups, '') IS NOT NULL THEN
        RAISE EXCEPTION 'token groups must not be null or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF can_write IS NULL THEN
        RAISE EXCEPTION 'can_write must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    token := synclog._random_token();
    INSERT INTO synclog.tokens (token_hash, subject, groups, can_write)
    VALUES (sha256(convert_to(token, 'UTF8')), subject,
            (SELECT array_agg(DISTINCT g ORDER BY g) FROM unnest(groups) g), can_write);
    RETURN token;
END
$$;

CREATE FUNCTION synclog.revoke_token(token text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h bytea;
BEGIN
    IF token IS NULL THEN
        RAISE EXCEPTION 'synclog.revoke_token needs a token' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    h := sha256(convert_to(token, 'UTF8'));
    UPDATE synclog.tokens t SET revoked_at = now() WHERE t.token_hash = h AND t.revoked_at IS NULL;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM synclog.tokens t WHERE t.token_hash = h) THEN
        RAISE EXCEPTION 'token not found' USING ERRCODE = 'undefined_object',
            HINT = 'Pass the token text that synclog.create_token returned.';
    END IF;
    -- Gateways listen here to close the revoked token's live connections.
    PERFORM pg_notify('synclog_revoke', encode(h, 'hex'));
END
$$;

CREATE FUNCTION synclog.authenticate(token text)
RETURNS TABLE (subject text, groups text[], can_write bool)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.subject, t.groups, t.can_write
      FROM synclog.tokens t
     WHERE t.token_hash = sha256(convert_to(token, 'UTF8')) AND t.revoked_at IS NULL
$$;

-- The same for a caller that sends the token's SHA-256 instead of the token
-- (the gateway), so that no statement, parameter or log line carries a token.
CREATE FUNCTION synclog.authenticate_hash(token_hash bytea)
RETURNS TABLE (subject text, groups text[], can_write bool)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.subject, t.groups, t.can_write
      FROM synclog.tokens t
     WHERE t.token_hash OPERATOR(pg_catalog.=) authenticate_hash.token_hash AND t.revoked_at IS NULL
$$;

------------------------------------------------------------------------------
-- push
------------------------------------------------------------------------------

-- Code attached to a tracked table runs inside push as the table's owner,
-- restricted (see push.c); push itself writes only synclog's tables.
CREATE FUNCTION synclog.push(token text, client_id text, ops jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'synclog_push'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- push for a caller that sends the token's SHA-256 (the gateway).
CREATE FUNCTION synclog.push_hash(token_hash bytea, client_id text, ops jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'synclog_push_hash'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

------------------------------------------------------------------------------
-- Reading the change stream
------------------------------------------------------------------------------

CREATE FUNCTION synclog.cursor() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT s.high_water FROM synclog.state s $$;

CREATE FUNCTION synclog.changes(groups text[], after bigint, max int) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st    synclog.state;
    res   jsonb;
    last  bigint;
    n     bigint;
BEGIN
    IF groups IS NULL THEN
        RAISE EXCEPTION 'synclog.changes needs an array of groups' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF after IS NULL OR after < 0 THEN
        RAISE EXCEPTION 'cursor must be a non-negative integer, not %', coalesce(after::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max IS NULL OR max < 1 THEN
        RAISE EXCEPTION 'max must be a positive integer, not %', coalesce(max::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM synclog._ensure_sequencer();
    SELECT * INTO st FROM synclog.state;
    -- A cursor below what compaction kept, or beyond what this server ever
    -- numbered (a restored backup, another database), cannot be continued.
    IF after < st.compacted_through OR after > st.high_water THEN
        RETURN jsonb_build_object('snapshot_required', true, 'cursor', st.high_water);
    END IF;

    SELECT coalesce(jsonb_agg(c.change ORDER BY c.seq), '[]'::jsonb), max(c.seq), count(*)
      INTO res, last, n
      FROM (SELECT o.seq,
                   jsonb_build_object('seq', o.seq, 'op_id', o.op_id, 'client_id', o.client_id,
                                      'table', o.table_name, 'row', o.row_id, 'group', o.grp, 'kind', o.kind,
                                      'fields', o.fields, 'hlc', lpad(to_hex(o.hlc), 16, '0')) AS change
              FROM synclog.ops o
             WHERE o.seq > after AND o.seq <= st.high_water AND o.grp = ANY (groups)
             ORDER BY o.seq
             LIMIT max) c;

    RETURN jsonb_build_object('changes', res,
                              'cursor', CASE WHEN n = max THEN last ELSE st.high_water END);
END
$$;

CREATE FUNCTION synclog.snapshot(groups text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     record;
    part  jsonb;
    rows  jsonb := '[]'::jsonb;
BEGIN
    IF groups IS NULL THEN
        RAISE EXCEPTION 'synclog.snapshot needs an array of groups' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- STABLE: every statement below reads the one snapshot of the calling
    -- query, so the rows and the cursor agree.
    FOR t IN
        SELECT tr.tbl, tr.name, tr.pk_column, tr.group_column,
               format_type(a.atttypid, a.atttypmod) AS pk_type
          FROM synclog.tracked tr
          JOIN pg_attribute a ON a.attrelid = tr.tbl AND a.attname = tr.pk_column
         ORDER BY tr.name
    LOOP
        -- A table altered since track() so that reading it would run its
        -- owner's code with synclog's rights is left out (and its ops are
        -- refused invalid_op) until it is fixed or untracked.
        CONTINUE WHEN NOT synclog._readable(t.tbl, t.name, t.pk_column, t.group_column);
        EXECUTE format(
            'SELECT coalesce(jsonb_agg(jsonb_build_object(''table'', $2, ''row'', m.row_id, '
            '''fields'', synclog._row_jsonb($3, x), ''clocks'', m.clocks) ORDER BY m.row_id), ''[]''::jsonb) '
            'FROM synclog.row_meta m JOIN %s x ON x.%I OPERATOR(pg_catalog.=) m.row_id::%s '
            'WHERE m.tbl = $3 AND NOT m.deleted AND m.grp = ANY ($1)',
            t.tbl, t.pk_column, t.pk_type)
          INTO part USING groups, t.name, t.tbl;
        rows := rows || part;
    END LOOP;
    RETURN jsonb_build_object('rows', rows, 'cursor', (SELECT s.high_water FROM synclog.state s));
END
$$;

-- One page of a snapshot, for readers that must bound their memory (the
-- gateway): at most max rows after the position (after_table, after_row) in
-- (table name, row id) order; two NULLs start at the beginning.  With
-- max_bytes, rows stop once their JSON text reaches that many bytes (a page
-- has at least one row, whatever its size).  Returns
-- {"rows":[...], "cursor":N, "more":bool, "table":t, "row":r}, table/row being
-- the position of the last row returned (pass it back for the next page).
-- Pages are read at different moments: a reader takes the FIRST page's cursor
-- as the snapshot's and then applies changes() after it; a change already
-- reflected in a later page is then applied twice, which per-field LWW makes
-- harmless.
CREATE FUNCTION synclog.snapshot_page(groups text[], after_table text, after_row text, max int,
                                      max_bytes bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t      record;
    part   jsonb;
    rows   jsonb := '[]'::jsonb;
    n      int := 0;
    got    int;
    seen   int;
    bytes  bigint := 0;
    len    bigint;
    cut    boolean := false;
    last_t text;
    cur    bigint;
BEGIN
    IF groups IS NULL THEN
        RAISE EXCEPTION 'synclog.snapshot_page needs an array of groups' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max IS NULL OR max < 1 THEN
        RAISE EXCEPTION 'max must be a positive integer, not %', coalesce(max::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_bytes IS NOT NULL AND max_bytes < 1 THEN
        RAISE EXCEPTION 'max_bytes must be a positive integer or NULL, not %', max_bytes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (after_table IS NULL) <> (after_row IS NULL) THEN
        RAISE EXCEPTION 'after_table and after_row go together (both NULL for the first page)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.high_water INTO cur FROM synclog.state s;
    FOR t IN
        SELECT tr.tbl, tr.name, tr.pk_column, tr.group_column,
               format_type(a.atttypid, a.atttypmod) AS pk_type
          FROM synclog.tracked tr
          JOIN pg_attribute a ON a.attrelid = tr.tbl AND a.attname = tr.pk_column
         WHERE after_table IS NULL OR tr.name >= after_table
         ORDER BY tr.name
    LOOP
        EXIT WHEN n >= max OR cut;
        -- As in snapshot: a table no longer safe to read is left out.
        CONTINUE WHEN NOT synclog._readable(t.tbl, t.name, t.pk_column, t.group_column);
        -- b.before: the bytes of the rows before this one in the page.
        EXECUTE format(
            'SELECT coalesce(jsonb_agg(b.j ORDER BY b.row_id) FILTER (WHERE b.keep), ''[]''::jsonb), '
            '       count(*) FILTER (WHERE b.keep)::int, count(*)::int, '
            '       coalesce(sum(b.len) FILTER (WHERE b.keep), 0)::bigint '
            'FROM (SELECT a.row_id, a.j, a.len, '
            '             $6::bigint IS NULL OR sum(a.len) OVER (ORDER BY a.row_id) - a.len < $6 '
            '             OR ($7 AND a.rn = 1) AS keep '
            '      FROM (SELECT r.row_id, r.j, octet_length(r.j::text)::bigint AS len, '
            '                   row_number() OVER (ORDER BY r.row_id) AS rn '
            '            FROM (SELECT m.row_id, jsonb_build_object(''table'', $2, ''row'', m.row_id, '
            '                         ''fields'', synclog._row_jsonb($3, x), ''clocks'', m.clocks) AS j '
            '                  FROM synclog.row_meta m JOIN %s x ON x.%I OPERATOR(pg_catalog.=) m.row_id::%s '
            '                  WHERE m.tbl = $3 AND NOT m.deleted AND m.grp = ANY ($1) '
            '                  AND ($4::text IS NULL OR m.row_id > $4) '
            '                  ORDER BY m.row_id LIMIT $5 OFFSET 0) r) a) b',
            t.tbl, t.pk_column, t.pk_type)
          INTO part, got, seen, len
          USING groups, t.name, t.tbl,
                CASE WHEN t.name = after_table THEN after_row END, max - n,
                max_bytes - bytes, n = 0;
        IF got > 0 THEN
            rows := rows || part;
            n := n + got;
            bytes := bytes + len;
            last_t := t.name;
        END IF;
        cut := got < seen OR (max_bytes IS NOT NULL AND bytes >= max_bytes);
    END LOOP;
    IF n = 0 THEN
        RETURN jsonb_build_object('rows', rows, 'cursor', cur, 'more', false);
    END IF;
    -- A full page may be the last: "more" then costs one empty page.
    RETURN jsonb_build_object('rows', rows, 'cursor', cur, 'more', n >= max OR cut,
                              'table', last_t, 'row', (rows -> -1) ->> 'row');
END
$$;

CREATE FUNCTION synclog.tables() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(t.name, jsonb_build_object(
               'pk', t.pk_column,
               'group', t.group_column,
               'columns', (SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod))
                             FROM pg_attribute a
                            WHERE a.attrelid = t.tbl AND a.attnum > 0 AND NOT a.attisdropped))),
           '{}'::jsonb)
      FROM synclog.tracked t
$$;

------------------------------------------------------------------------------
-- Maintenance and test support
------------------------------------------------------------------------------

-- Compacts now what the worker would compact on its next round, with this
-- session's synclog.retention.  Returns the new compacted_through.
CREATE FUNCTION synclog.compact() RETURNS bigint
    AS 'MODULE_PATHNAME', 'synclog_compact'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Waits until every op committed before the call is sequenced; returns the
-- cursor then.  Ops of the calling transaction itself are not committed, so
-- call it in a transaction of its own.
CREATE FUNCTION synclog.wait_sequenced(timeout interval DEFAULT '10s') RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    target   bigint;
BEGIN
    SELECT max(o.local_id) INTO target FROM synclog.ops o WHERE o.seq IS NULL;
    LOOP
        PERFORM synclog._ensure_sequencer();
        IF target IS NULL OR NOT EXISTS
            (SELECT 1 FROM synclog.ops o WHERE o.seq IS NULL AND o.local_id <= target) THEN
            RETURN (SELECT s.high_water FROM synclog.state s);
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'ops are not being sequenced'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Ops up to local id %s were still unsequenced after %s.', target, timeout),
                      HINT = 'Check that shared_preload_libraries includes ''synclog'' and that the server log shows the synclog sequencer running.';
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
END
$$;

-- Dropping a tracked table untracks it.
CREATE FUNCTION synclog._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone oid[];
BEGIN
    SELECT array_agg(d.objid) INTO gone
      FROM pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.object_type = 'table';
    IF gone IS NOT NULL THEN
        DELETE FROM synclog.row_meta m WHERE m.tbl::oid = ANY (gone);
        DELETE FROM synclog.tracked t WHERE t.tbl::oid = ANY (gone);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION synclog._on_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER synclog_sql_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION synclog._on_sql_drop();

REVOKE ALL ON FUNCTION synclog.track(regclass, name), synclog.untrack(regclass),
    synclog.create_token(text, text[], bool), synclog.revoke_token(text),
    synclog.authenticate(text), synclog.push(text, text, jsonb), synclog.cursor(),
    synclog.authenticate_hash(bytea), synclog.push_hash(bytea, text, jsonb),
    synclog.changes(text[], bigint, int), synclog.snapshot(text[]),
    synclog.snapshot_page(text[], text, text, int, bigint), synclog.tables(),
    synclog.compact(), synclog.wait_sequenced(interval) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION synclog.authenticate(text), synclog.push(text, text, jsonb),
    synclog.authenticate_hash(bytea), synclog.push_hash(bytea, text, jsonb),
    synclog.cursor(), synclog.changes(text[], bigint, int), synclog.snapshot(text[]),
    synclog.snapshot_page(text[], text, text, int, bigint),
    synclog.tables() TO synclog_gateway;

-- The sequencer for this database starts once CREATE EXTENSION commits.
SELECT synclog._start_sequencer();
