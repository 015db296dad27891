#!/usr/bin/env python3
"""A fake OpenAI upstream for the idle-stream memory row: every POST gets a
200 event stream with ONE chunk (role and a first word: chatgate answers a
stream's head only once text has come, so that it can still fail over
before), then nothing: the stream stays open until the peer closes it or a
time limit passes.

Usage: idle_sse_upstream.py PORT MAX_HOLD_SECONDS
Binds 127.0.0.1 only. Prints `LISTENING` once it accepts connections.
"""
import asyncio
import sys

EVENT = (b'data: {"id":"chatcmpl-idle","object":"chat.completion.chunk","created":1700000000,'
         b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant",'
         b'"content":"Hello"},"finish_reason":null}]}\n\n')
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
CHUNK = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)


async def serve(reader, writer, max_hold):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await asyncio.wait_for(reader.readexactly(length), 30)
        writer.write(HEAD + CHUNK)
        await writer.drain()
        # Held: returns when the peer closes (EOF) or the limit passes.
        await asyncio.wait_for(reader.read(1), max_hold)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    port, max_hold = int(sys.argv[1]), float(sys.argv[2])
    server = await asyncio.start_server(lambda r, w: serve(r, w, max_hold), "127.0.0.1", port,
                                        backlog=4096)
    print("LISTENING", flush=True)
    async with server:
        await asyncio.wait_for(server.serve_forever(), max_hold + 60)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except asyncio.TimeoutError:
        pass
