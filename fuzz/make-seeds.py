#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/ from bodies, ids, requests
and events the tests use (tests/api_*_test.cpp, tests/domain_*_test.cpp).
Run from the repository root; the output is committed. Each seed is named by
the SHA-1 of its bytes, as libFuzzer names what it adds."""
import hashlib, json, os, random, struct

OUT = "fuzz/corpus"
ID = "3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab"  # tests/domain_decide_test.cpp
T0 = 1795802400000                          # 2026-11-27T18:00:00.000Z
ENDPOINTS = ["create", "claims", "start", "heartbeat", "succeed", "fail", "cancel", "cancelled"]

def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

# Bodies: tests/api_endpoints_test.cpp, api_malformed_test.cpp, api_workers_test.cpp.
BODIES = {
    "create": [
        '{"type":"thumbnail","params":{"w":1,"h":2.5},"heartbeat_timeout_s":60,"labels":{"team":"a"}}',
        '{ "params": {"b": 2, "a": 1},\n "type": "thumb" }',
        '{"type":"x","execution_timeout_s":30,"queue_timeout_s":600,"not_before":"2026-12-06T18:00:00Z",'
        '"priority":5,"retry":{"max_attempts":3,"initial_backoff_s":1,"max_backoff_s":10}}',
        '{"type":"utf8","params":{"s":"na\u00efve \u2603 \U0001d11e \u00e9","e":"\\u0001\\"\\\\/"}}',
        '{"type":"a","type":"b"}', '{"type":}', '{"type": "a",}', '{"type":"a"} {"type":"b"}',
        '{"type":"a","params":NaN}', '{"type":"a","params":01}', '{"type":"x","params":"\\ud800"}',
        '{"type":"x","params":{"n":1,"n":2}}', '{"type":"nest","params":' + "[" * 63 + "]" * 63 + "}",
        '{"type":"x","not_before":"2026-12-06T19:00:00+01:00","priority":-1001}',
        '{"type":"x","heartbeat_timeout_s":18446744073709551615}', '{}', '',
    ],
    "claims": ['{"types":["t"],"worker":"w-1","wait_s":5}', '{"types": ["t"], "wait_s": 61}',
               '{"types": []}', '{"types": ["bad type"]}', '{"types":["a","b","a"]}',
               '{"types": ["t"], "worker": 5}'],
    "start": ['{"worker":"host-1/4242"}', '', '{"worker":"host\xff"}'],
    "heartbeat": ['{"progress":{"fraction":0.5,"message":"half","details":{"step":3}}}',
                  '{"progress":{"fraction":.5}}', '{"progress":null}', '{"progress":{"fraction":1.5}}'],
    "succeed": ['{"result":{"ok":true,"url":"s3://b/k"}}', '{"result":1e300}', ''],
    "fail": ['{"error":{"code":"boom","message":"it broke","details":{"line":3}}}',
             '{"error":{"code":"x","retryable":true}}', '{"error":"str"}', ''],
    "cancel": ['{"reason":"user asked"}', ''],
    "cancelled": ['{"reason":"stopped"}'],
}
for i, e in enumerate(ENDPOINTS):
    for b in BODIES[e]:
        write("fuzz_request_body", bytes([i]) + b.encode("utf-8", "surrogateescape"))
        if b:
            write("fuzz_canonical_json", b"\x00" + b.encode("utf-8", "surrogateescape"))

# Query values, ids, versions, types, times: tests/api_malformed_test.cpp, api_endpoints_test.cpp.
for q in [ID, ID.upper(), ID[:-1] + "g", "00000000-0000-0000-0000-000000000000", "10", "%31%30",
          "%71ueued", "-1", "0", "abc", "%00", "1%00", "%", "%4", "9223372036854775807",
          "9223372036854775808", "-9223372036854775808", "+5", "00000000000000000000010",
          '"3"', ' "1" ', '"-1"', 'W/"3"', "thumbnail", "a.b:c-d_e", "bad type", "queued",
          "retry_scheduled", "2026-12-06T18:00:00Z", "2026-12-06t18:00:00.123456z",
          "2026-12-06T19:00:00+01:00", "2026-11-27T18:00:00.000Z", "127.0.0.1:8080", "[::1]:9",
          "localhost.", "rebind.attacker.example", "http://127.0.0.1:8080", "null"]:
    write("fuzz_query_ids", q)

# Requests: tests/api_malformed_test.cpp, api_open_access_test.cpp, raw_socket.h users.
REQS = [
    "GET /v1/jobs/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"2\"\r\n\r\n" % ID,
    "GET /v1/jobs?limit=%32&state=%71ueued&type=thumb HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /v1/events?after_seq=3&limit=10&wait_s=1 HTTP/1.1\r\nHost: [::1]:9\r\nConnection: close\r\n\r\n",
    "GET /v1/jobs/%s/wait?timeout_s=5&after_version=1 HTTP/1.0\r\n\r\n" % ID,
    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Idempotency-Key: k-1\r\nContent-Length: 16\r\n\r\n{\"type\":\"thumb\"}",
    "POST /v1/jobs/%s/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Match: \"2\"\r\nJob-Lease: abc\r\n"
    "Content-Type: application/json; charset=utf-8\r\nContent-Length: 29\r\n\r\n"
    "{\"progress\":{\"fraction\":0.5}}" % ID,
    "POST /v1/claims HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n\r\n11\r\n{\"types\":[\"t\"]}\r\n0\r\n\r\n",
    "POST /v1/jobs HTTP/1.1\r\nHost: rebind.attacker.example\r\nOrigin: null\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n",
    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 13\r\nContent-Length: 2\r\n\r\n{}",
    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +13\r\n\r\n{}",
    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len",
    "GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\nGET /v1/audit/head HTTP/1.1\r\n\r\n",
    "BREW /v1/jobs HTTP/1.1\r\n\r\n", "GET /v1/jobs HTTP/2.0\r\n\r\n",
]
for r in REQS:
    for seg in (255, 7):
        write("fuzz_http_request", bytes([seg]) + r.encode())

# Stored events and status rows (eventstore/event_codec.h, store/status_row.h).
def event_record(version, etype, at, data, hash_raw=b"\x11" * 32):
    return (b"\x01" + hash_raw + struct.pack(">Q", version) + bytes([etype]) +
            struct.pack(">q", at) + bytes.fromhex(ID.replace("-", "")) + data.encode())
EVENTS = [(1, 1, T0, '{"heartbeat_timeout_s":60,"labels":{},"params":{},"type":"thumbnail"}'),
          (2, 2, T0 + 1000, '{"worker":"host-1/4242"}'),
          (3, 3, T0 + 2000, '{"progress":{"fraction":0.5}}'),
          (4, 5, T0 + 3000, '{"error":{"code":"x","details":null,"message":""}}'),
          (3, 8, T0 + 3000, '{"attempt":2,"error":{"code":"abandoned"},"not_before":"2026-11-27T18:00:10.000Z"}')]
for v, t, at, d in EVENTS:
    write("fuzz_codecs", b"\x00" + event_record(v, t, at, d))
    write("fuzz_codecs", b"\x03" + struct.pack("<QQBq", 7, v, t, at) + b"\x22" * 48 + d.encode())
ROW = {"attempt": 1, "cancel_requested": False, "created_at": "2026-11-27T18:00:00.000Z",
       "deadline_at": "2026-11-27T18:01:01.000Z", "error": None, "execution_timeout_s": None,
       "finished_at": None, "heartbeat_timeout_s": 60, "id": ID, "labels": {}, "last_error": None,
       "last_heartbeat_at": None, "lease_hash": None, "max_attempts": 1, "not_before": None,
       "params": {"w": 1}, "priority": 0, "progress": None, "queue_timeout_s": None, "result": None,
       "retry": None, "started_at": "2026-11-27T18:00:01.000Z", "state": "running",
       "type": "thumbnail", "version": 2, "worker": "host-1/4242"}
row_json = json.dumps(ROW, sort_keys=True, separators=(",", ":"))
header = b"\x01" + struct.pack(">Q", 2) + b"\x02" + struct.pack(">QQQ", 1, T0 + 61000, 60)
write("fuzz_codecs", b"\x01" + header + row_json.encode())
queued = dict(ROW, state="queued", version=1, started_at=None, deadline_at=None, worker=None)
write("fuzz_codecs", b"\x01" + b"\x01" + struct.pack(">Q", 1) + b"\x01" + struct.pack(">QQQ", 1, 0, 60) +
      json.dumps(queued, sort_keys=True, separators=(",", ":")).encode())
write("fuzz_codecs", b"\x02" + b"0" * 64)
write("fuzz_codecs", b"\x02" + hashlib.sha256(b"x").hexdigest().encode())

# Canonical JSON: the float cases of tests/domain_values_test.cpp, as text and as bits.
for text in ['[0.1,1e16,1e-5,0.0001,1000000000000000.0,-0.0,0.2485859740334425,5e-324,1.7976931348623157e308]',
             '{"b":1,"a":[true,false,null],"\u00e9":"\u2028","":{}}', '{"progress":{"fraction":0.5}}',
             '[18446744073709551615,-9223372036854775808,1e400]', '"\\u0000\\u001f\\u007f"']:
    write("fuzz_canonical_json", b"\x00" + text.encode())
for d in [0.1, 1e16, 1e-5, 1e-4, 1e15, 123456789012345678.0, -0.0, 5e-324, 0.2485859740334425, 2.5]:
    write("fuzz_canonical_json", b"\x01" + struct.pack("<d", d))

# Command sequences: bytes the FuzzedDataProvider of fuzz_decide_apply.cpp reads.
rng = random.Random(14)
for n in [16, 64, 256, 1024]:
    for _ in range(3):
        write("fuzz_decide_apply", bytes(rng.randrange(256) for _ in range(n)))
