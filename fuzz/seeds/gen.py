#!/usr/bin/env python3
"""Write the hand-made seed inputs of the raw-byte fuzz targets.

Each is one well-formed exchange from docs/PROTOCOL.md (or a near miss),
so that a short run starts past the magic numbers. Inputs that reproduce
a finding are not seeds (a seed that crashes stops the whole run): they
are tests in crates/ipckit/tests/fuzz_findings.rs. Run from anywhere:
`python3 fuzz/seeds/gen.py`; it rewrites fuzz/seeds/<target>/.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u16(v): return struct.pack("<H", v)
def u32(v): return struct.pack("<I", v)
def u64(v): return struct.pack("<Q", v)
def i64(v): return struct.pack("<q", v)


def hello(magic, status=0, flags=0, extra=0, limit=4096, version=1):
    return magic + bytes([version, status, flags, extra]) + u32(limit)


# Named pipes: frame = kind u8, 3 zero bytes, len u32, payload.
def pipe_frame(kind, payload=b"", length=None):
    return bytes([kind, 0, 0, 0]) + u32(len(payload) if length is None else length) + payload


# Services: kind, encoding, method_len u16, 4 zero, call_id u64, body_len u64.
def svc_frame(kind, method=b"", body=b"", enc=0, call_id=1, body_len=None):
    n = len(body) if body_len is None else body_len
    return bytes([kind, enc]) + u16(len(method)) + bytes(4) + u64(call_id) + u64(n) + method + body


# Mailslots: write header = kind 1, 3 zero, len u32, timeout_ms u32, 4 zero.
def slot_write(msg, timeout_ms=1000, length=None):
    n = len(msg) if length is None else length
    return bytes([1, 0, 0, 0]) + u32(n) + u32(timeout_ms) + bytes(4) + msg


def slot_ack(status=0, count=0):
    return bytes([status, 0, 0, 0]) + u32(count)


# Window messages: request = kind, 3 zero, id u32, len u32, 4 zero;
# response = kind, code, 2 zero, len u32, result i64.
def wm_request(kind, msg_id, data, length=None):
    n = len(data) if length is None else length
    return bytes([kind, 0, 0, 0]) + u32(msg_id) + u32(n) + bytes(4) + data


def wm_response(kind, code, data, result, length=None):
    n = len(data) if length is None else length
    return bytes([kind, code, 0, 0]) + u32(n) + i64(result) + data


def client_case(mech, first, later=b"", shm=False):
    return bytes([mech | (4 if shm else 0)]) + u16(len(first)) + first + later


SEEDS = {
    "pipe_stream": {
        "decline-then-message": pipe_frame(3) + pipe_frame(1, b"hello") + pipe_frame(1, b""),
        "messages": pipe_frame(1, b"hello") + pipe_frame(1, b"world"),
        "oversized": pipe_frame(1, b"x" * 16, length=8192),
        "fd-without-fd": pipe_frame(2),
        "bad-header": bytes([1, 1, 0, 0]) + u32(1) + b"x",
    },
    "client_hello": {
        "pipe": client_case(0, hello(b"IPCKPIPE", limit=1 << 20) + pipe_frame(1, b"hi")),
        "pipe-shm-offer": client_case(0, hello(b"IPCKPIPE", flags=0x80, limit=1 << 20), shm=True),
        "pipe-busy": client_case(0, hello(b"IPCKPIPE", status=1)),
        "service": client_case(1, hello(b"IPCKSERV", limit=1 << 16) + svc_frame(2, body=b"\x03abc")),
        "service-error": client_case(1, hello(b"IPCKSERV") + svc_frame(3, body=b'{"code":1,"message":"no"}', enc=1)),
        "service-lane": client_case(1, hello(b"IPCKSERV", flags=1, limit=1 << 16), hello(b"IPCKSERV", flags=1, limit=1 << 16) + svc_frame(4, call_id=0), shm=True),
        "mailslot": client_case(2, hello(b"IPCKSLOT", limit=0) + slot_ack() + slot_ack(1) + slot_ack(2, 4)),
        "message": client_case(3, hello(b"IPCKWMSG") + wm_response(1, 0, b"ok", 7) + wm_response(2, 0, b"", 0)),
    },
    "service_frames": {
        "add-postcard": svc_frame(1, b"add", b"\x02\x03"),
        "add-json": svc_frame(1, b"add", b"[2,3]", enc=1, call_id=2),
        "mixed-json": svc_frame(1, b"mixed", b'["s",[1,2],null,{"a":1.5},true]', enc=1),
        "echo-twice": svc_frame(1, b"echo", b"x") + svc_frame(1, b"echo", b"y", call_id=2),
        "describe": svc_frame(1, b"ipckit.describe", b"", enc=1),
        "fail": svc_frame(1, b"fail", b'"no"', enc=1),
        "loan-on-socket": svc_frame(5, b"sum", u64(0) + u64(4)),
        "lane-without-fd": svc_frame(4, call_id=0),
        "huge-body": svc_frame(1, b"echo", b"", body_len=1 << 40),
    },
    "mailslot_writes": {
        "limited": b"\x00" + slot_write(b"hello") + slot_write(b"", timeout_ms=0xFFFFFFFF),
        "unlimited": b"\x01" + slot_write(b"hello"),
        "over-limit": b"\x00" + slot_write(b"x" * 8, length=5000),
    },
    "message_requests": {
        "send": wm_request(1, 0x4A, b"abc"),
        "post-then-send": wm_request(2, 0x400, b"p") + wm_request(1, 0x401, b"s"),
        "over-limit": wm_request(1, 1, b"x" * 8, length=5000),
        "huge": wm_request(1, 1, b"", length=0xFFFFFFFF),
    },
    "mailslot_udp": {
        "datagram": b"IPCKMSD1" + u16(3) + b"far" + b"payload",
        "other-name": b"IPCKMSD1" + u16(4) + b"near" + b"payload",
        "too-large": b"IPCKMSD1" + u16(3) + b"far" + b"x" * 500,
    },
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
