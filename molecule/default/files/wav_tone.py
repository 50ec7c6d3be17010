#!/usr/bin/env python3
"""Is there a tone in the audio a test client recorded? (baresip's aufile/sndfile wav files)

  wav_tone.py FILE EXPECTED_HZ [MIN_SECONDS]

Prints one JSON line: length, RMS, the share of 20 ms frames that are not silence, and the
strongest of a few candidate tones (Goertzel over one second of the loud part). Exits 0 only
when the file is at least MIN_SECONDS long, at least half of its frames carry sound and the
strongest tone is EXPECTED_HZ: the far end's tone went through the gateway, codecs and all.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import wave

SILENCE_RMS = 300.0
CANDIDATES = (300.0, 425.0, 440.0, 600.0, 1000.0, 2000.0)


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0


def goertzel(samples: list[int], rate: int, hz: float) -> float:
    k = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return math.sqrt(max(0.0, s1 * s1 + s2 * s2 - k * s1 * s2)) / max(1, len(samples))


def main() -> int:
    path, expected = sys.argv[1], float(sys.argv[2])
    min_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    with wave.open(path) as w:
        rate, channels, width, frames = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(frames)
    if width != 2:
        raise SystemExit(f"{path}: {width * 8}-bit samples, expected 16-bit PCM")
    samples = list(struct.unpack(f"<{len(raw) // 2}h", raw))[::channels]
    seconds = len(samples) / rate
    step = rate // 50
    chunks = [samples[i : i + step] for i in range(0, len(samples) - step + 1, step)]
    loud = [i for i, chunk in enumerate(chunks) if rms(chunk) >= SILENCE_RMS]
    strongest = None
    if loud:
        start = loud[0] * step
        window = samples[start : start + rate] or samples
        magnitudes = {hz: goertzel(window, rate, hz) for hz in sorted({*CANDIDATES, expected})}
        strongest = max(magnitudes, key=lambda hz: magnitudes[hz])
    loud_share = len(loud) / max(1, len(chunks))
    ok = seconds >= min_seconds and loud_share >= 0.5 and strongest == expected
    print(
        json.dumps(
            {
                "file": path,
                "seconds": round(seconds, 2),
                "rms": round(rms(samples), 1),
                "loud_share": round(loud_share, 2),
                "strongest_hz": strongest,
                "expected_hz": expected,
                "ok": ok,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
