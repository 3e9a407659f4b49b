#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from samples/webmail/*.http.

Each raw request becomes a `rules` seed as is; its body becomes a `form`, `multipart`
(Content-Type line + body), `json` or `netease` seed by its Content-Type; address-looking
field values become `address` seeds; each `expected.json` becomes a `meta.json` (`meta`) and a
journal record (`journal`). SMTP has no sample files, so `smtp_reply` and `smtp_command` get
short hand-written dialogues (RFC 5321 shapes plus hostile variants). Run from anywhere:
`python3 fuzz/make_seeds.py [extra sample dirs...]`. Output is deterministic and small; the
generated files are committed, the fuzzer's own corpus (fuzz/corpus/) is not.
"""
import hashlib
import json
import pathlib
import sys
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"


def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    (d / name).write_bytes(data)


def split_request(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return headers, body


def multipart_texts(ct, body):
    boundary = ct.split("boundary=", 1)[1].strip('"').encode()
    for part in body.split(b"--" + boundary):
        _, _, value = part.partition(b"\r\n\r\n")
        yield value.rstrip(b"\r\n")


def address_values(values):
    for v in values:
        if b"@" in v and len(v) < 512:
            put("address", v)


def from_request(path):
    raw = path.read_bytes()
    put("rules", raw, path.stem)
    headers, body = split_request(raw)
    ct = headers.get("content-type", "")
    media = ct.split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        put("form", body, path.stem)
        pairs = [
            (urllib.parse.unquote_to_bytes(k.replace(b"+", b" ")),
             urllib.parse.unquote_to_bytes(v.replace(b"+", b" ")))
            for k, _, v in (seg.partition(b"=") for seg in body.split(b"&") if seg)
        ]
        address_values(v for _, v in pairs)
        if body.startswith(b"var="):
            put("netease", body, path.stem)
            xml = dict(pairs).get(b"var", b"")
            put("netease", xml, path.stem + "-xml")
    elif media == "multipart/form-data":
        put("multipart", ct.encode() + b"\n" + body, path.stem)
        address_values(multipart_texts(ct, body))
    elif media == "application/json":
        put("json", body, path.stem)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        address_values(
            str(v).encode() for v in doc.values() if isinstance(v, (str, int))
        )


def meta_json(name, expected):
    def mb(a):
        return {"name": None, "addr": a}

    record = {
        "id": "20261123T100000.000001Z-0badf00d",
        "origin": "Webmail",
        "sender": expected.get("from") or "",
        "sender_source": "Request",
        "from_name": None,
        "to": [mb(a) for a in expected.get("to") or []],
        "cc": [mb(a) for a in expected.get("cc") or []],
        "bcc": [mb(a) for a in expected.get("bcc") or []],
        "reply_to": None,
        "subject": expected.get("subject") or "",
        "text": expected.get("text"),
        "html": expected.get("html"),
        "attachments": [
            {"filename": "a.txt", "content_type": "text/plain", "data": "aGVsbG8="}
        ],
        "source": {
            "rule": name,
            "webmail_host": "webmail.example.test",
            "client": "127.0.0.1:50000",
            "proxy": "127.0.0.1:8800",
        },
        "received": "2026-11-23T10:00:00.000001Z",
        "http_head": "POST /send HTTP/1.1\r\nCookie: [redacted]\r\n",
        "http_response_head": "",
        "rejected": None,
    }
    rcpts = {a: {"status": "pending"} for a in expected.get("to") or []}
    if rcpts:
        first = next(iter(rcpts))
        rcpts[first] = {"status": "deferred", "reason": "451 4.3.0 try later"}
    return {
        "version": 1,
        "id": "20261123T100000.000001Z-0badf00d-1",
        "state": "deferred",
        "created": "2026-11-23T10:00:00.000001Z",
        "attempts": 1,
        "next_attempt": "2026-11-23T10:05:00.000001Z",
        "recipients": rcpts,
        "last_error": "451 4.3.0 try later",
        "message_bytes": 1234,
        "record": record,
    }


def record(doc):
    return b"R %d\n" % len(doc) + doc + b"\n"


def from_expected(path):
    name = path.name[: -len(".expected.json")]
    doc = json.dumps(meta_json(name, json.loads(path.read_text())), indent=2).encode()
    put("meta", doc, name)
    put("journal", record(doc) + record(doc.replace(b'"deferred"', b'"delivered"')), name)
    put("journal", record(doc) + b"R 99", name + "-torn")


SMTP_REPLIES = {
    "greeting": "220 mx.example.test ESMTP ready\r\n",
    "ehlo": "250-mx.example.test greets client\r\n250-SIZE 10485760\r\n250-PIPELINING\r\n"
    "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n"
    "250 AUTH PLAIN LOGIN\r\n",
    "rcpt-unknown": "550 5.1.1 <nobody@example.test>: Recipient address rejected\r\n",
    "too-many": "452 4.5.3 Too many recipients\r\n",
    "data": "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 1234\r\n",
    "multi-error": "554-5.7.1 rejected\r\n554-5.7.1 see https://example.test/why\r\n554 5.7.1 bye\r\n",
    "mismatch": "250-a\r\n251 b\r\n",
    "bare-code": "250\r\n221\r\n",
    "bare-lf": "250-a\n250 b\n",
    "bare-cr": "250-a\rb\r\n250 c\r\n",
    "auth": "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n",
}

SMTP_COMMANDS = {
    "session": "EHLO client.example\r\nMAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME\r\n"
    "RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.net>\r\nDATA\r\nSubject: x\r\n\r\n"
    "..dot\r\n.\r\nQUIT\r\n",
    "utf8": "EHLO c\r\nMAIL FROM:<\u674e@\u4f8b\u5b50.\u6d4b\u8bd5> SMTPUTF8\r\n"
    "RCPT TO:<\u5f20@example.com>\r\nRSET\r\nNOOP\r\nVRFY x\r\nQUIT\r\n",
    "auth": "EHLO c\r\nAUTH PLAIN AHVzZXIAcGFzcw==\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n"
    "AUTH PLAIN =\r\n",
    "hostile": "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<a@b>\rRCPT TO:<c@d>\r\n"
    "RCPT TO:<x\x00y@z>\r\nmail from: <a@b>\r\nRCPT TO:b@c\r\nSTARTTLS\r\nrest",
}


def main():
    dirs = [ROOT / "samples" / "webmail"] + [pathlib.Path(a) for a in sys.argv[1:]]
    for d in dirs:
        for p in sorted(d.glob("*.http")):
            if not p.name.endswith(".response.http"):
                from_request(p)
        for p in sorted(d.glob("*.expected.json")):
            from_expected(p)
    for name, text in SMTP_REPLIES.items():
        put("smtp_reply", text, name)
    for name, text in SMTP_COMMANDS.items():
        put("smtp_command", text, name)
    for name, text in {
        "hostile-crlf": 'a@b.com\r\nRCPT TO:<evil@x.com>, "Q, \\"x\\"" <q@example.com>',
        "entities": "Zhang&nbsp;San <z@example.com>; &#160;b@example.com;",
        "quoted": '"a>b"@example.com, <"x y"@example.com>, (c) d@e.fr',
    }.items():
        put("address", text, name)
    for name, text in {
        "nested": '{"a":{"b":[1,{"c":2}]},"a":"dup","n":null,"f":1.5e3,"u":"\\ud83d\\ude00"}',
    }.items():
        put("json", text, name)


if __name__ == "__main__":
    main()
