#!/usr/bin/env python3
"""Probes of issue 10's hostile intercepted requests, run against one or two mailtap binaries.

    benches/intercept_bounds.py CANDIDATE [BASELINE] [--only NAME,...]

Each probe starts the binary on 127.0.0.1:0 (data in a temp dir, a fake webmail on loopback),
sends one hostile or large request, and prints what the process paid: peak RSS (VmHWM), RSS
left afterwards, memory mappings at peak, CPU seconds (utime+stime) and the answer's status.
With a BASELINE binary (e.g. the build before a change) every figure is printed for both, with
the ratio candidate/baseline, in the same run. Probes:

  parts66k   a SquirrelMail send with 66,000 one-byte file parts (5.9 MB), then a normal send
  ids200k    a RainLoop send with 200,000 Attachments[id] fields (cap raised when supported)
  send45m    one SquirrelMail send with a 45 MiB attachment
  six45m     six of those at once
  line9m     a Roundcube send whose 9 MiB body is one line; RSS 2 s after the answer
  stall      a body that stops after 10 bytes: seconds until mailtap answers (cut at 40 s)

PROBE_CONFIG (TOML) is added to every probe's configuration, e.g. an [smtp] section pointing at
a closed loopback port, to measure interception without the delivery that follows it.

Only loopback is used. Every wait is bounded.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

MIB = 1024 * 1024


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_secs(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def maps(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


class Webmail:
    """Answers every request 200 after reading its Content-Length body."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        c.settimeout(60)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(rest) < need:
                chunk = c.recv(1 << 20)
                if not chunk:
                    return
                rest += chunk
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nwebmail ok\n")
        except OSError:
            pass
        finally:
            c.close()


class Mailtap:
    def __init__(self, binary, extra):
        self.dir = tempfile.TemporaryDirectory()
        with open(os.path.join(self.dir.name, "m.toml"), "w") as f:
            f.write('[builtin_smtp]\nlisten = "127.0.0.1:0"\n'
                    '[resolve]\n"webmail.example.test" = "127.0.0.1"\n'
                    '[senders]\n"webmail.example.test" = "lilei@example.com"\n'
                    '[limits]\nmax_message_bytes = 209715200\n'
                    + os.environ.get("PROBE_CONFIG", "") + "\n" + extra)
        self.p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--config", "m.toml"],
                                  cwd=self.dir.name, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        first = self.p.stdout.readline().decode()
        host, port = first.strip().rsplit(" ", 1)[1].rsplit(":", 1)
        self.addr = (host, int(port))
        threading.Thread(target=lambda: [None for _ in self.p.stdout], daemon=True).start()

    def stop(self):
        self.p.kill()
        self.p.wait()
        self.dir.cleanup()


def exchange(addr, request, timeout=300):
    s = socket.create_connection(addr, timeout=timeout)
    try:
        try:
            s.sendall(request)
        except OSError:
            pass
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, rest = data.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
        return data.split(b"\r\n", 1)[0].decode(errors="replace") or "(no answer)"
    finally:
        s.close()


def squirrelmail(port, files=0, attachment=0):
    b = "----probe"
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode()
             for n, v in [("send_to", "bob@example.org"), ("subject", "probe"),
                          ("body", "hello"), ("send1", "Send")]]
    for i in range(files):
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="attachfile"; '
                     f'filename="f{i}.txt"\r\nContent-Type: text/plain\r\n\r\nx\r\n'.encode())
    if attachment:
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="attachfile"; '
                     f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + os.urandom(attachment) + b"\r\n")
    parts.append(f"--{b}--\r\n".encode())
    body = b"".join(parts)
    head = (f"POST http://webmail.example.test:{port}/sm/src/compose.php HTTP/1.1\r\n"
            f"Host: webmail.example.test\r\nContent-Type: multipart/form-data; boundary={b}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def rainloop(port, ids):
    body = ("Action=SendMessage&IdentityID=0&To=bob%40example.org&Subject=ids&TextIsHtml=0&Text=hi"
            + "".join(f"&Attachments%5Bid{i}%5D=f{i}.txt" for i in range(ids))).encode()
    head = (f"POST http://webmail.example.test:{port}/rainloop/?/Ajax/&q[]=/0/ HTTP/1.1\r\n"
            f"Host: webmail.example.test\r\nContent-Type: application/x-www-form-urlencoded; "
            f"charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def roundcube(port, message_len):
    body = (b"_token=t&_task=mail&_action=send&_id=42&_from=1&_to=bob%40example.org"
            b"&_subject=line&_is_html=0&_message=" + b"a" * message_len)
    head = (f"POST http://webmail.example.test:{port}/roundcube/?_task=mail&_unlock=l7&_framed=1 "
            f"HTTP/1.1\r\nHost: webmail.example.test\r\nContent-Type: "
            f"application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def supports(binary, key):
    """Whether `binary` knows [intercept].KEY (the baseline may predate it)."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(f"[intercept]\n{key} = 1000\n")
        f.flush()
        return subprocess.run([binary, "check-config", f.name], capture_output=True).returncode == 0


def sample_peak(pid, stop, out):
    peak = 0
    while not stop.is_set():
        peak = max(peak, maps(pid))
        time.sleep(0.005)
    out.append(peak)


def probe(binary, name, web):
    extra = ""
    if name == "ids200k" and supports(binary, "max_parts"):
        extra = "[intercept]\nmax_parts = 300000\n"
    if name == "six45m" and supports(binary, "max_inflight_bytes"):
        extra = ""  # the default budget applies
    mt = Mailtap(binary, extra)
    pid = mt.p.pid
    try:
        time.sleep(0.3)
        rss0, cpu0 = proc_status(pid, "VmRSS"), cpu_secs(pid)
        stop, peak = threading.Event(), []
        sampler = threading.Thread(target=sample_peak, args=(pid, stop, peak))
        sampler.start()
        t0 = time.time()
        status = ""
        if name == "parts66k":
            status = exchange(mt.addr, squirrelmail(web.port, files=66000))
            alive = mt.p.poll() is None
            nxt = exchange(mt.addr, squirrelmail(web.port, files=2), timeout=30) if alive else "-"
            status += f" | next send: {nxt if mt.p.poll() is None else 'PROCESS DIED'}"
        elif name == "ids200k":
            status = exchange(mt.addr, rainloop(web.port, 200000))
        elif name == "send45m":
            status = exchange(mt.addr, squirrelmail(web.port, attachment=45 * MIB))
        elif name == "six45m":
            req = squirrelmail(web.port, attachment=45 * MIB)
            res = [None] * 6
            ts = [threading.Thread(target=lambda i=i: res.__setitem__(i, exchange(mt.addr, req)))
                  for i in range(6)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            status = ", ".join(sorted(set(r or "?" for r in res)))
        elif name == "line9m":
            head, body = roundcube(web.port, 9 * MIB)
            status = exchange(mt.addr, head + body)
            time.sleep(2)
        elif name == "stall":
            head, body = roundcube(web.port, 1000)
            s = socket.create_connection(mt.addr, timeout=40)
            s.sendall(head + body[:10])
            try:
                data = s.recv(4096)
                status = data.split(b"\r\n", 1)[0].decode() or "(closed)"
            except socket.timeout:
                status = "no answer in 40 s"
            s.close()
        elapsed = time.time() - t0
        stop.set()
        sampler.join()
        return {
            "status": status,
            "peak_rss_mib": proc_status(pid, "VmHWM") / MIB,
            "rss_after_mib": proc_status(pid, "VmRSS") / MIB,
            "rss_before_mib": rss0 / MIB,
            "peak_maps": peak[0] if peak else 0,
            "cpu_s": cpu_secs(pid) - cpu0,
            "wall_s": elapsed,
        }
    finally:
        mt.stop()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--only")]
    only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")]
    if not args:
        print(__doc__)
        sys.exit(2)
    names = only[0].split(",") if only else ["parts66k", "ids200k", "send45m", "six45m",
                                             "line9m", "stall"]
    web = Webmail()
    for name in names:
        results = [(b, probe(b, name, web)) for b in args]
        print(f"== {name}")
        for b, r in results:
            print(f"  {b}: {r['status']}")
        for key in ["peak_rss_mib", "rss_after_mib", "peak_maps", "cpu_s", "wall_s"]:
            vals = [r[key] for _, r in results]
            line = f"  {key:14}" + "".join(f"{v:12.2f}" for v in vals)
            if len(vals) == 2 and vals[1]:
                line += f"   ratio {vals[0] / vals[1]:.2f}"
            print(line)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
