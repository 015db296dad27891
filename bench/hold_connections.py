#!/usr/bin/env python3
"""Open N keep-alive connections to chatgate, send one chat request on each,
read the answer, then hold every connection open until terminated (SIGTERM)
or a time limit passes. Prints `READY ok=<n> failed=<n>` once all are open.
With --stream the body asks for a stream: each connection reads the answer's
head and its first event, then holds the stream open (an idle stream).

Usage: hold_connections.py [--stream] HOST PORT PATH KEY BODY_FILE N MAX_HOLD_SECONDS
Loopback only, bounded in connections and time.
"""
import asyncio
import sys


async def one(host, port, request, conns, counts, stream):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if stream:
            # The first event (its chunk-size line, then `data: ...` and a blank line).
            await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
        else:
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), 10)
        counts["ok" if head.startswith(b"HTTP/1.1 200") else "failed"] += 1
        conns.append(writer)
    except Exception:  # noqa: BLE001 - a failed connection is counted, not fatal
        counts["failed"] += 1


async def main():
    args = sys.argv[1:]
    stream = args[:1] == ["--stream"]
    host, port, path, key, body_file, n, max_hold = args[1:8] if stream else args[:7]
    body = open(body_file, "rb").read()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    conns, counts = [], {"ok": 0, "failed": 0}
    n = int(n)
    # Batches of 100, so the listen backlog never overflows.
    for start in range(0, n, 100):
        await asyncio.gather(*(one(host, port, request, conns, counts, stream)
                               for _ in range(min(100, n - start))))
    print(f"READY ok={counts['ok']} failed={counts['failed']} open={len(conns)}", flush=True)
    # Held until the caller terminates us, or the time limit passes.
    await asyncio.sleep(float(max_hold))
    for w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
