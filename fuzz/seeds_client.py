#!/usr/bin/env python3
"""fuzz/seeds_client.py: writes the seed corpus of fuzz_client
(fuzz/corpus/client/): server frames as PROTOCOL.md gives them, in the
record format fuzz_client.c describes (records separated by 0xff: a command
byte, then the payload; "@0" stands for the id of the input's first op).
It rewrites only the files it names: the corpus also holds inputs the
fuzzer found (reproducers of fixed bugs)."""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "client")
SEP = b"\xff"
TABLES = (b'{"issues":{"pk":"id","group":"team","columns":{"id":"uuid","team":"text","title":"text",'
          b'"status":"text","estimate":"integer"}}}')
WELCOME = b'{"type":"welcome","cursor":3,"hlc":"018c2a6f3e410001","groups":["team-a"],"tables":' + TABLES + b'}'
WELCOME0 = WELCOME.replace(b'"cursor":3', b'"cursor":0')


def change(seq, row, fields, op="6f1c2a3b-0000-4000-8000-00000000000%d", client="other", kind="upsert",
           hlc="018c2a6f3e000000"):
    op = op % seq if "%d" in op else op
    return (b'{"seq":%d,"op_id":"%s","client_id":"%s","table":"issues","row":"%s","kind":"%s",'
            b'"fields":%s,"hlc":"%s"}' % (seq, op.encode(), client.encode(), row.encode(), kind.encode(),
                                          fields, hlc.encode()))


def changes(cursor, *cs):
    return b'{"type":"changes","changes":[' + b",".join(cs) + b'],"cursor":%d}' % cursor


def rec(cmd, payload=b""):
    return cmd.encode() + payload


def seq(*records):
    return SEP.join(records)


ROW = "2b9e0000-0000-4000-8000-000000000001"
seeds = {
    "welcome_changes": seq(rec("f", WELCOME),
                           rec("f", changes(5, change(4, ROW, b'{"team":"team-a","title":"Fix login","estimate":3}'),
                                            change(5, ROW, b'{"title":"Fix login page","estimate":0.1}')))),
    "own_op_back": seq(rec("p", b"issues\t" + ROW.encode() + b'\t{"team":"team-a","title":"mine"}'),
                       rec("f", WELCOME),
                       rec("f", b'{"type":"ack","acked":["@0"],"rejected":[],"hlc":"018c2a6f3e410001"}'),
                       rec("f", changes(4, change(4, ROW, b'{"team":"team-a","title":"mine"}', op="@0",
                                                  client="me")))),
    "rejected": seq(rec("f", WELCOME), rec("p", b"issues\tr1\t{\"team\":\"team-a\",\"estimate\":-1}"),
                    rec("f", b'{"type":"ack","acked":[],"rejected":[{"id":"@0","code":"constraint_violation",'
                             b'"message":"new row violates check constraint"}],"hlc":"018c2a6f3e410002"}')),
    "snapshot": seq(rec("f", WELCOME0),
                    rec("f", b'{"type":"snapshot","rows":[{"table":"issues","row":"' + ROW.encode() +
                             b'","fields":{"team":"team-a","title":"t"},"clocks":{"team":{"hlc":"018c2a6f3e000000",'
                             b'"client_id":"c"},"title":{"hlc":"018c2a6f3e000000","client_id":"c"}}}],'
                             b'"cursor":9,"done":false}'),
                    rec("f", b'{"type":"snapshot","rows":[],"cursor":9,"done":true}'),
                    rec("f", changes(10, change(10, ROW, b'{}', kind="delete")))),
    "delete_then_put": seq(rec("f", WELCOME), rec("p", b"issues\tr2\t{\"team\":\"team-a\"}"),
                           rec("d", b"issues\tr2"),
                           rec("f", changes(6, change(6, "r2", b'{}', kind="delete"))), rec("r"), rec("f", WELCOME),
                           rec("f", changes(7, change(7, "r2", b'{"title":"late"}')))),
    "before_welcome": seq(rec("p", b'todo\tt1\t{"text":"offline","done":false}'),
                          rec("f", b'{"type":"welcome","cursor":0,"hlc":"018c2a6f3e410001","groups":["g"],'
                                   b'"tables":{"todo":{"pk":"id","group":"g","columns":{"id":"text","g":"text",'
                                   b'"text":"text","done":"boolean"}}}}')),
    "error_frames": seq(rec("f", WELCOME), rec("f", b'{"type":"error","code":"bad_frame","message":"x"}'),
                        rec("f", b'{"type":"pong","hlc":"018c2a6f3e410001"}'), rec("f", b"[1]"),
                        rec("f", b'{"type":"error","code":"unauthorized","message":"revoked"}')),
    "out_of_order": seq(rec("f", WELCOME), rec("f", changes(9, change(9, "r3", b'{"title":"b"}'),
                                                            change(8, "r3", b'{"title":"a"}')))),
    "escapes": seq(rec("f", WELCOME),
                   rec("f", changes(4, change(4, "r\\\"4", b'{"title":"a\\u00e9\\n\\\"}","status":null,'
                                              b'"estimate":1e2}')))),
    # a local write whose table (before a welcome: provisional) or row is
    # not UTF-8: refused (it would make every push frame carrying it a bad_frame)
    "put_not_utf8": seq(rec("p", b"\xbc\tr\t{}"), rec("f", WELCOME),
                        rec("p", b'issues\t\xbcrow\t{"team":"team-a","title":"x"}'),
                        rec("d", b"issues\t\xed\xa0\x80")),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
