"""Anchor for the media link's connect time: two aiortc peer connections in one process on this
host, an audio track each way (as our links carry), offer -> both "connected" (ICE + DTLS).
Prints the median and the range over N runs, in milliseconds.

    python3 benches/anchors/aiortc_connect.py [N]
"""
import asyncio
import statistics
import sys
import time

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack


async def once():
    a, b = RTCPeerConnection(), RTCPeerConnection()
    a.addTrack(AudioStreamTrack())
    b.addTrack(AudioStreamTrack())
    up = {"a": asyncio.Event(), "b": asyncio.Event()}

    def watch(pc, name):
        @pc.on("connectionstatechange")
        async def _():
            if pc.connectionState == "connected":
                up[name].set()

    watch(a, "a")
    watch(b, "b")
    t0 = time.perf_counter()
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(asyncio.gather(up["a"].wait(), up["b"].wait()), 10)
    ms = (time.perf_counter() - t0) * 1000
    await a.close()
    await b.close()
    return ms


async def main(n):
    runs = [await once() for _ in range(n)]
    print(f"{statistics.median(runs):.1f} {min(runs):.1f} {max(runs):.1f}")


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
