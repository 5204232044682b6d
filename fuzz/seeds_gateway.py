#!/usr/bin/env python3
"""fuzz/seeds_gateway.py: writes the seed corpus of fuzz_gateway
(fuzz/corpus/gateway/), real frames from PROTOCOL.md and the gateway's
tests, in the record format fuzz_gateway.c describes (records separated by
0xff: command byte, connection byte, payload).  Run it from anywhere; it
rewrites only the files it names."""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gateway")
SEP = b"\xff"
HELLO = (b'{"type":"hello","client_id":"laptop-1","token":"slt_0123456789abcdef",'
         b'"groups":["team-a","team-b"],"cursor":0,"hlc":"018c2a6f3e000000"}')
HELLO7 = HELLO.replace(b'"cursor":0', b'"cursor":7')
PUSH = (b'{"type":"push","ops":[{"id":"6f1c2a3b-0000-4000-8000-000000000001","table":"issues",'
        b'"row":"2b9e","kind":"upsert","fields":{"team":"team-a","title":"Fix login"},'
        b'"hlc":"018c2a6f3e000000"}]}')
ACK = b'{"acked":["6f1c2a3b-0000-4000-8000-000000000001"],"rejected":[],"hlc":"018c2a6f3e410001"}'
AUTH_OK = b'\x01["team-a","team-c"]\n7\n{"issues":{"pk":"id","group":"team","columns":{"id":"uuid","team":"text"}}}'
SNAP = b'{"rows":[{"table":"issues","row":"2b9e","fields":{"team":"team-a"},"clocks":{}}],"cursor":9,"more":false}'
SNAP_MORE = b'{"rows":[],"cursor":9,"more":true,"table":"issues","row":"2b9e"}'


def rec(cmd, conn=0, payload=b""):
    return cmd.encode() + bytes([conn]) + payload


def seq(*records):
    return SEP.join(records)


seeds = {
    "hello_welcome_push_ack": seq(rec("c"), rec("t", 0, HELLO7), rec("a", 0, AUTH_OK), rec("W"),
                                  rec("a", 0, b"7 \n"), rec("t", 0, PUSH), rec("a", 1, ACK), rec("W")),
    "snapshot_then_changes": seq(rec("c"), rec("t", 0, HELLO), rec("a", 0, AUTH_OK), rec("a", 0, SNAP_MORE),
                                 rec("W"), rec("a", 0, SNAP), rec("a", 0, b"12 \n1 =0 {\"title\":\"a\"}\n2 team-b x\n"),
                                 rec("W")),
    "fanout_two_sessions": seq(rec("c", 0), rec("c", 1), rec("t", 0, HELLO7), rec("t", 1, HELLO7),
                               rec("a", 0, AUTH_OK), rec("a", 0, AUTH_OK), rec("a", 0, b"7 \n"), rec("a", 0, b"7 \n"),
                               rec("n"), rec("a", 0, b"20 \n1 =0 a\n1 =1 b\n3 team-a " + b"y" * 600 + b"\n"),
                               rec("W"), rec("n", 0, b"r"), rec("a", 0, b"slt_0123456789abcdef\n"), rec("W")),
    "snapshot_required": seq(rec("c"), rec("t", 0, HELLO7), rec("a", 0, AUTH_OK), rec("a", 0, b"30 s\n"),
                             rec("a", 0, SNAP), rec("W")),
    "ping_before_hello": seq(rec("c"), rec("t", 0, b'{"type":"ping"}'), rec("t", 0, b'{"type":"push","ops":[]}'),
                             rec("W")),
    "auth_refused": seq(rec("c"), rec("t", 0, HELLO), rec("a", 0, b"\x00"), rec("W")),
    "bad_frames": seq(rec("c"), rec("t", 0, b"{}"), rec("t", 0, b"{'type':'ping'}"),
                      rec("t", 0, b'{"type":"ping","x":"\xc0\xaf"}'), rec("t", 0, b'{"type":"subscribe"}'),
                      rec("t", 0, b'{"type":"ping","type":"push"}'), rec("b", 0, b'{"type":"ping"}'),
                      rec("o"), rec("W")),
    "fragments": seq(rec("c"), rec("f", 4 * 3, HELLO), rec("a", 0, AUTH_OK), rec("a", 0, b"7 \n"),
                     rec("f", 4 * 2, b'{"type":"ping"}'), rec("W")),
    "timeouts": seq(rec("c"), rec("k", 0, b"\xf0"), rec("W"), rec("c", 1), rec("t", 1, HELLO7),
                    rec("a", 1, AUTH_OK), rec("a", 1, b"7 \n"), rec("W"), rec("k", 0, b"\xf0"), rec("k", 0, b"\xf0"),
                    rec("k", 0, b"\xf0"), rec("p", 1), rec("W")),
    "db_errors": seq(rec("c"), rec("t", 0, HELLO7), rec("e"), rec("W"), rec("c", 1), rec("D"),
                     rec("t", 1, HELLO7), rec("W")),
    "push_reply_garbage": seq(rec("c"), rec("t", 0, HELLO7), rec("a", 0, AUTH_OK), rec("a", 0, b"7 \n"),
                              rec("t", 0, PUSH), rec("a", 1, b'{"acked":5}'), rec("t", 0, PUSH),
                              rec("a", 1, b"\x00"), rec("W")),
    "unknown_type": seq(rec("c"), rec("t", 0, HELLO7), rec("a", 0, AUTH_OK), rec("t", 0, b'{"type":"subscribe"}'),
                        rec("t", 0, HELLO7), rec("W")),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
