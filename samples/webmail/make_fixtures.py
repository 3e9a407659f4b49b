#!/usr/bin/env python3
"""Writes mailtap's own webmail fixtures (same conventions as shared/samples/webmail).

Every .http file gets CRLF line endings and an exact Content-Length; every expected.json is
written from the literal values below (what the user typed), never from mailtap's output.
Run from this directory: python3 make_fixtures.py
"""
import json
from urllib.parse import quote

SUBJECT = "实验报告：TCP & UDP 第3周 (100%)"
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"


def enc(s, charset="utf-8", plus=False):
    b = s.encode(charset)
    out = quote(b, safe="-_.!~*'()" if not plus else "-_.*")
    return out.replace("%20", "+") if plus else out


def form(pairs, charset="utf-8", plus=False):
    return "&".join(f"{enc(k, charset, plus)}={enc(v, charset, plus)}" for k, v in pairs).encode()


def request(name, line, headers, body):
    head = [line] + [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(body)}"]
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    with open(name, "wb") as f:
        f.write(data)


def response(name, headers, body):
    head = ["HTTP/1.1 200 OK"] + [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(body)}"]
    with open(name, "wb") as f:
        f.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def expected(name, frm, to, cc, bcc, subject, text, html, atts, rejected=None):
    d = {"from": frm, "to": to, "cc": cc, "bcc": bcc, "subject": subject, "text": text,
         "html": html, "attachments": [{"filename": f, "content_type": c, "size": s} for f, c, s in atts]}
    if rejected:
        d["rejected"] = rejected
    with open(name, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False, indent=2)
        f.write("\n")


def multipart(boundary, parts):
    out = b""
    for p in parts:
        name, value = p[0], p[1]
        out += f"--{boundary}\r\n".encode()
        if len(p) == 2:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
        else:
            disp, ctype = p[2], p[3]
            out += f"Content-Disposition: form-data; name=\"{name}\"; {disp}\r\nContent-Type: {ctype}\r\n\r\n".encode()
            out += value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


WM = "webmail.example.test"
FORM = "application/x-www-form-urlencoded"

# --- NetEase 163 js6 deliver (XML in `var`) and its draft save -----------------------------
HTML163 = "<div>张老师：</div><div>附件见网盘。a+b=c, 50% done &amp; OK.</div><div>李雷</div>"


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def netease_xml(action):
    return ('<?xml version="1.0"?><object><string name="id">c:1723456800123</string>'
            '<object name="attrs">'
            f'<string name="account">{xml_escape(chr(34) + "李雷" + chr(34) + "<lilei163@163.com>")}</string>'
            '<boolean name="showOneRcpt">false</boolean>'
            f'<array name="to"><string>{xml_escape(chr(34) + "张三" + chr(34) + "<zhangsan@example.com>")}</string>'
            '<string>bob@example.org</string></array>'
            f'<array name="cc"><string>{xml_escape(chr(34) + "王五" + chr(34) + "<wangwu@example.net>")}</string></array>'
            '<array name="bcc"><string>carol@example.net</string></array>'
            f'<string name="subject">{xml_escape(SUBJECT)}</string>'
            '<boolean name="isHtml">true</boolean>'
            f'<string name="content">{xml_escape(HTML163)}</string>'
            '<int name="priority">3</int><boolean name="saveSentCopy">true</boolean>'
            '<string name="charset">utf-8</string></object>'
            '<boolean name="returnInfo">false</boolean>'
            f'<string name="action">{action}</string><int name="saveSentLimit">1</int></object>')


for action, fname in [("deliver", "netease.http"), ("save", "netease-save.passthrough.http")]:
    request(fname,
            f"POST http://mail.163.com/js6/s?sid=QBqWzLxYkAbCdEfG&func=mbox:compose&cl_send=1&l=compose&action={action} HTTP/1.1",
            [("Host", "mail.163.com"), ("User-Agent", UA), ("Content-Type", FORM), ("Accept", "text/javascript"),
             ("Cookie", "Coremail=abc%QBqWzLxYkAbCdEfG; MAIL_SESS=secret")],
            form([("var", netease_xml(action))]))
expected("netease.expected.json", "lilei163@163.com", ["zhangsan@example.com", "bob@example.org"],
         ["wangwu@example.net"], ["carol@example.net"], SUBJECT, None, HTML163, [])

# --- SquirrelMail 1.5.2: send1 button, RFC 2231 filename ----------------------------------
B = "----WebKitFormBoundaryS15aaaaBBBBcccc"
BODY15 = "张老师：\r\n附件是实验报告。a+b=c, 50% done & OK.\r\n李雷"
ATT15 = "实验数据 第3周\nRTT 23 ms\n".encode()
request("squirrelmail15.http", f"POST http://{WM}/sm/src/compose.php HTTP/1.1",
        [("Host", WM), ("User-Agent", UA), ("Content-Type", f"multipart/form-data; boundary={B}"),
         ("Cookie", "SQMSESSID=abcdef0123456789")],
        multipart(B, [("smtoken", "Qw3rTy"), ("send_to", "张三 <zhangsan@example.com>; bob@example.org"),
                      ("send_to_cc", "\"Wang, Wu\" <wangwu@example.net>"), ("send_to_bcc", "carol@example.net"),
                      ("subject", SUBJECT), ("body", BODY15), ("send_button_count", "2"), ("send1", "Send"),
                      ("attachfile", ATT15, "filename=\"data.txt\"; filename*=UTF-8''" + quote("实验数据.txt"), "text/plain"),
                      ("mailbox", "INBOX"), ("composesession", "1")]))
expected("squirrelmail15.expected.json", None, ["zhangsan@example.com", "bob@example.org"],
         ["wangwu@example.net"], ["carol@example.net"], SUBJECT, BODY15, None, [("实验数据.txt", "text/plain", len(ATT15))])

# SquirrelMail "Save Draft": must pass through
request("squirrelmail-draft.passthrough.http", f"POST http://{WM}/squirrelmail/src/compose.php HTTP/1.1",
        [("Host", WM), ("User-Agent", UA), ("Content-Type", f"multipart/form-data; boundary={B}")],
        multipart(B, [("send_to", "bob@example.org"), ("subject", "draft"), ("body", "x"), ("draft", "Save Draft"),
                      ("attachfile", b"", 'filename=""', "application/octet-stream")]))

# --- SnappyMail before 2.25: Capitalised keys, plain-text mode; and a SaveMessage draft ----
TEXT_OLD = "张老师：\n您好！a+b=c, 50% done & OK.\n李雷"
old = {"Action": "SendMessage", "IdentityID": "", "MessageFolder": "", "MessageUid": "", "SaveFolder": "Sent",
       "From": "李雷 <lilei@example.com>", "To": "\"张三\" <zhangsan@example.com>,bob@example.org",
       "Cc": "\"王五\" <wangwu@example.net>", "Bcc": "carol@example.net", "ReplyTo": "", "Subject": SUBJECT,
       "Html": "", "Text": TEXT_OLD, "DraftInfo": None, "InReplyTo": "", "References": "", "MarkAsImportant": 0,
       "Attachments": {}, "Dsn": 0, "ReadReceiptRequest": 0}
sm_headers = [("Host", WM), ("User-Agent", UA), ("Content-Type", "application/json"), ("X-SM-Token", "0123abcd"),
              ("Cookie", "smtoken=0123abcd; smsession=feedface")]
request("snappymail-old.http", f"POST http://{WM}/?/Json/&q[]=/0/ HTTP/1.1", sm_headers,
        json.dumps(old, ensure_ascii=False, separators=(",", ":")).encode())
expected("snappymail-old.expected.json", "lilei@example.com", ["zhangsan@example.com", "bob@example.org"],
         ["wangwu@example.net"], ["carol@example.net"], SUBJECT, TEXT_OLD, None, [])
save = {"identityID": "", "saveFolder": "Drafts", "from": "李雷 <lilei@example.com>", "to": "bob@example.org",
        "subject": "draft", "plain": "x", "attachments": {}, "Action": "SaveMessage"}
request("snappymail-save.passthrough.http", f"POST http://{WM}/?/Json/&q[]=/0/ HTTP/1.1", sm_headers,
        json.dumps(save, separators=(",", ":")).encode())

# --- RainLoop 1.x: upload, its response, then the send referencing the TempName -------------
BR = "----WebKitFormBoundaryRainLoop12345"
CSV = b"week,rtt_ms\n3,23\n"
TEMP = "3f1a9c0e5b7d2f4a6c8e0b1d3f5a7c9e"
request("rainloop-upload.http", f"POST http://{WM}/rainloop/?/Upload/&q[]=/0/ HTTP/1.1",
        [("Host", WM), ("User-Agent", UA), ("Content-Type", f"multipart/form-data; boundary={BR}"),
         ("Cookie", "rltoken=tok; RL_SESSION=s1")],
        multipart(BR, [("uploader", CSV, 'filename="rtt.csv"', "text/csv")]))
response("rainloop-upload.response.http", [("Content-Type", "application/json; charset=utf-8")],
         json.dumps({"Action": "Upload", "Result": {"Attachment": {"Name": "rtt.csv", "TempName": TEMP,
                                                                   "MimeType": "text/csv", "Size": len(CSV)}}}).encode())
HTML_RL = "<div data-html-editor-font-wrapper=\"true\" style=\"font-family: arial;\">张老师：<br>a+b=c, 50% done &amp; OK.</div>"
request("rainloop.http", f"POST http://{WM}/rainloop/?/Ajax/&q[]=/0/ HTTP/1.1",
        [("Host", WM), ("User-Agent", UA), ("Content-Type", f"{FORM}; charset=UTF-8"),
         ("X-Requested-With", "XMLHttpRequest"), ("Cookie", "rltoken=tok; RL_SESSION=s1")],
        form([("Action", "SendMessage"), ("IdentityID", "0"), ("MessageFolder", ""), ("MessageUid", ""),
              ("DraftFolder", "Drafts"), ("SentFolder", "Sent"), ("To", "\"张三\" <zhangsan@example.com>,bob@example.org"),
              ("Cc", "\"王五\" <wangwu@example.net>"), ("Bcc", "carol@example.net"), ("ReplyTo", ""),
              ("Subject", SUBJECT), ("TextIsHtml", "1"), ("Text", HTML_RL), ("DraftInfo", ""),
              ("InReplyTo", ""), ("References", ""), ("MarkAsImportant", "0"),
              (f"Attachments[{TEMP}][]", "rtt.csv"), (f"Attachments[{TEMP}][]", "0"),
              (f"Attachments[{TEMP}][]", ""), (f"Attachments[{TEMP}][]", ""), ("XToken", "tok")]))
expected("rainloop.expected.json", None, ["zhangsan@example.com", "bob@example.org"], ["wangwu@example.net"],
         ["carol@example.net"], SUBJECT, None, HTML_RL, [("rtt.csv", "text/csv", len(CSV))])

# --- QQ classic, older page: GB18030 form without any charset --------------------------------
HTML_QQ = "<div>张老师：附件见后。a+b=c, 50% done &amp; OK.</div>"
request("qqmail-gbk.http", "POST http://set1.mail.qq.com/cgi-bin/compose_send?sid=GbKsid123 HTTP/1.1",
        [("Host", "set1.mail.qq.com"), ("User-Agent", UA), ("Content-Type", FORM),
         ("Cookie", "qm_username=lilei.example; sid=secret")],
        form([("sid", "GbKsid123"), ("to", "\"张三\"<zhangsan@example.com>; \"bob\"<bob@example.org>"),
              ("cc", "\"王&nbsp;五\"<wangwu@example.net>"), ("bcc", "carol@example.net;"), ("subject", SUBJECT),
              ("content__html", HTML_QQ), ("sendmailname", "lilei.example@qq.com"), ("actiontype", "send"),
              ("sendname", "李雷"), ("t", "compose_send.json")], charset="gb18030"))
expected("qqmail-gbk.expected.json", "lilei.example@qq.com", ["zhangsan@example.com", "bob@example.org"],
         ["wangwu@example.net"], ["carol@example.net"], SUBJECT, None, HTML_QQ, [])

# --- Roundcube: plain-text send with quoted commas/semicolons, literal From; draft; other ----
TEXT_RC = "张老师：\r\n您好！a+b=c, 50% done & OK.\r\n李雷"
rc_headers = [("Host", WM), ("User-Agent", UA), ("Content-Type", FORM),
              ("Cookie", "roundcube_sessid=77aa; roundcube_sessauth=secret")]
rc_fields = [("_token", "tok"), ("_task", "mail"), ("_action", "send"), ("_id", "5550c0ffee"), ("_attachments", ""),
             ("_from", "Li Lei <lilei@example.com>"),
             ("_to", "\"Zhang, San\" <zhangsan@example.com>, \"Bob; Jr.\" <bob@example.org>,"),
             ("_cc", "王五 <wangwu@example.net>"), ("_bcc", "carol@example.net"), ("_replyto", ""),
             ("_subject", SUBJECT), ("_draft_saveid", ""), ("_draft", ""), ("_is_html", "0"), ("_framed", "1"),
             ("_message", TEXT_RC), ("editorSelector", "plain"), ("_priority", "0"), ("_store_target", "Sent")]
request("roundcube-plain.http", f"POST http://{WM}/roundcube/?_task=mail&_unlock=loading1723456800999&_framed=1 HTTP/1.1",
        rc_headers, form(rc_fields, plus=True))
expected("roundcube-plain.expected.json", "lilei@example.com", ["zhangsan@example.com", "bob@example.org"],
         ["wangwu@example.net"], ["carol@example.net"], SUBJECT, TEXT_RC, None, [])
draft = [(k, "1" if k == "_draft" else v) for k, v in rc_fields]
request("roundcube-draft.passthrough.http", f"POST http://{WM}/roundcube/?_task=mail&_unlock=loading1&_framed=1 HTTP/1.1",
        rc_headers, form(draft, plus=True))
request("roundcube-saveonly.passthrough.http",
        f"POST http://{WM}/roundcube/?_task=mail&_saveonly=1&_unlock=loading2&_framed=1 HTTP/1.1",
        rc_headers, form(rc_fields, plus=True))
request("roundcube-addressbook.passthrough.http", f"POST http://{WM}/roundcube/?_task=addressbook&_action=save HTTP/1.1",
        rc_headers, form([("_token", "tok"), ("_name", "Bob"), ("_email", "bob@example.org")], plus=True))

# Hostile values: CR/LF in the subject and a recipient carrying an extra SMTP command.
hostile = [(k, v) for k, v in rc_fields]
hostile = [(k, {"_subject": "Hi\r\nBcc: victim@evil.test", "_to": "zhangsan@example.com\r\nRCPT TO:<x@evil.test>",
                 "_cc": "", "_bcc": ""}.get(k, v)) for k, v in hostile]
request("roundcube-hostile.http", f"POST http://{WM}/?_task=mail&_unlock=loading3&_framed=1 HTTP/1.1",
        rc_headers, form(hostile, plus=True))
expected("roundcube-hostile.expected.json", "lilei@example.com", ["zhangsan@example.com\r\nRCPT TO:<x@evil.test>"],
         [], [], "Hi\r\nBcc: victim@evil.test", TEXT_RC, None, [], rejected="InvalidAddress")
