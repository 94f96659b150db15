#!/usr/bin/env python3
"""PESQ-WB of a recording against the speech it carries.

usage: speech_score.py REFERENCE.wav RECORDING.wav
Prints one JSON line: {"pesq_wb": ..., "lag_ms": ..., "seconds": ...}. Both files are taken to
16 kHz mono; the recording is aligned to the reference by cross-correlation (it starts with the
call's set-up silence) and cut to the reference's length, then scored with ITU-T P.862.2
(the `pesq` package). Needs numpy, scipy, soundfile and pesq (benches/speech.rs makes a venv).
"""
import json
import sys
from math import gcd

import numpy as np
import soundfile as sf
from pesq import pesq
from scipy.signal import correlate, resample_poly

RATE = 16000


def load(path):
    x, fs = sf.read(path, dtype="float64")
    if x.ndim > 1:
        x = x[:, 0]
    if fs != RATE:
        g = gcd(fs, RATE)
        x = resample_poly(x, RATE // g, fs // g)
    return x


ref = load(sys.argv[1])
rec = load(sys.argv[2])
c = correlate(rec, ref, mode="full", method="fft")
lag = int(np.argmax(np.abs(c))) - (len(ref) - 1)
aligned = rec[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), rec])
aligned = aligned[: len(ref)]
if len(aligned) < len(ref):
    aligned = np.concatenate([aligned, np.zeros(len(ref) - len(aligned))])
score = pesq(RATE, ref, aligned, "wb")
print(json.dumps({"pesq_wb": round(float(score), 3), "lag_ms": 1000.0 * lag / RATE,
                  "seconds": len(ref) / RATE}))
