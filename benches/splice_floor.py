"""The least work a CONNECT proxy can do per byte, for benches/proxy.sh.

  splice_floor.py PORT    # listens on 127.0.0.1:PORT; CONNECT only, no checks, no limits

Each tunnel is two threads, one per direction, each moving socket -> pipe -> socket with blocking
splice(2) through a 1 MiB pipe: no user-space copy, no event loop. What mailtap's tunnel reaches
relative to this line is what its own code costs; what this line reaches relative to DIRECT is
what the extra loopback hop costs on this machine. Diagnostic only: loopback, and it serves
until killed.
"""
import fcntl
import os
import socket
import sys
import threading

PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = 1031


def pump(src, dst):
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # the default pipe size still works
    try:
        while True:
            n = os.splice(src.fileno(), w, PIPE_BYTES)
            if n == 0:
                break
            while n > 0:
                n -= os.splice(r, dst.fileno(), n)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)


def tunnel(client):
    client.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 8192:
        chunk = client.recv(4096)
        if not chunk:
            return
        head += chunk
    host, port = head.split()[1].decode().rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        return
    server = socket.create_connection((host, int(port)), timeout=10)
    client.settimeout(None)
    server.settimeout(None)
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    up = threading.Thread(target=pump, args=(client, server), daemon=True)
    up.start()
    pump(server, client)
    up.join(timeout=60)
    client.close()
    server.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(16)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=tunnel, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
