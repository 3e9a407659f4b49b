"""Idle CONNECT tunnels through a proxy, for benches/proxy.sh.

  idle_tunnels.py serve                       # prints a port, holds every connection it accepts
  idle_tunnels.py clients PROXY TARGET PID N  # opens N tunnels to TARGET, reports PID's RSS

The two halves run as separate processes so that neither needs more descriptors than the
machine's hard limit allows. Loopback only; every wait has a timeout.
"""
import asyncio
import sys


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


async def serve():
    async def hold(reader, writer):
        try:
            await reader.read()
        except (asyncio.CancelledError, ConnectionError):
            pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)


async def clients(proxy_port, target, pid, count):
    before = rss_mib(pid)
    sem = asyncio.Semaphore(500)
    tunnels = []

    async def one():
        async with sem:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy_port), 30)
            w.write(f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"tunnel refused: {head!r}")
            tunnels.append(w)

    await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.sleep(1)
    after = rss_mib(pid)
    per_kib = (after - before) * 1024 / count
    at_10k = before + per_kib * 10000 / 1024
    print(
        f"{count} idle CONNECT tunnels held: mailtap RSS {after:.1f} MiB (was {before:.1f} MiB; "
        f"{per_kib:.1f} KiB per tunnel, {at_10k:.0f} MiB at 10,000)"
    )
    for w in tunnels:
        w.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve())
    else:
        asyncio.run(clients(*map(int, sys.argv[2:6])))
