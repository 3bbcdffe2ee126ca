"""Long fuzz run of the .aec decoder: every case must end in a valid image or a DecodeError.

Cases: random bytes; truncations at every length; single-bit flips at every
position; and crafted files whose CRC is recomputed so the damage reaches the
header checks and the range decoder (random payloads, absurd dimensions, huge
payload lengths, unknown versions and flags, escapes past the end).  A case that
raises anything else, runs longer than --timeout seconds, or makes the process
grow (max RSS) by more than --max-growth MB after warm-up, is a failure.
A sample of the cases also goes through the real CLI (`aecompress decode`) to
check exit status 1 and a one-line error without traceback.

    python benchmarks/fuzz.py --cases 10000 [-m MODEL]
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from aecompress import Codec, DecodeError, load_model
from aecompress.bitstream import HEADER_SIZE, MAGIC, Header, pack
from aecompress.images import Picture


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout


def recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def crafted(rng: random.Random, model_id: str, seed_file: bytes) -> bytes:
    """A file with a valid CRC and something wrong (or random) inside."""
    kind = rng.randrange(8)
    w, h = rng.choice([(1, 1), (17, 9), (64, 48), (300, 200)])
    payload = seed_file[HEADER_SIZE:-4]
    if kind == 0:  # random payload, plausible header
        payload = rng.randbytes(rng.randrange(0, 2000))
    elif kind == 1:  # absurd dimensions
        w, h = rng.choice([(0, 5), (5, 0), (10**6, 10**6), (2**32 - 1, 2**32 - 1), (1, 2**31)])
    elif kind == 2:  # payload mutated in a few places
        p = bytearray(payload)
        for _ in range(rng.randrange(1, 8)):
            if p:
                p[rng.randrange(len(p))] = rng.randrange(256)
        payload = bytes(p)
    elif kind == 3:  # wrong declared payload length
        body = pack(Header(model_id, w, h, 3, 1), payload)[:-4]
        body = (
            body[: HEADER_SIZE - 4]
            + struct.pack(">I", rng.choice([0, 2**32 - 1, len(payload) + 1, rng.randrange(2**32)]))
            + body[HEADER_SIZE:]
        )
        return recrc(body)
    elif kind == 4:  # unknown version / flags / channels / quality
        body = bytearray(pack(Header(model_id, w, h, 3, 1), payload)[:-4])
        body[rng.choice([4, 21, 22, 23])] = rng.randrange(256)
        return recrc(bytes(body))
    elif kind == 5:  # varint past the end / escapes with no values
        payload = bytes([0xFF] * rng.randrange(1, 12))
    elif kind == 6:  # alpha flag with garbage alpha section
        return pack(Header(model_id, w, h, 4, 1, flags=1), rng.randbytes(rng.randrange(0, 200)))
    q = rng.randrange(1, 10)
    channels = rng.choice([1, 2, 3, 4, 0, 7])
    try:
        return pack(Header(model_id, w % 2**32, h % 2**32, channels, q), payload)
    except struct.error:
        return rng.randbytes(40)


def cases(rng: random.Random, seed_file: bytes, model_id: str, n: int):
    L = len(seed_file)
    for length in range(L):  # every truncation
        yield "truncate", seed_file[:length]
    for pos in range(L):  # a bit flip at every position
        b = bytearray(seed_file)
        b[pos] ^= 1 << rng.randrange(8)
        yield "bitflip", bytes(b)
    made = 2 * L
    while made < n:
        r = rng.random()
        if r < 0.15:
            yield "random", rng.randbytes(rng.randrange(0, 300))
        elif r < 0.25:
            yield "random-magic", MAGIC + bytes([1]) + rng.randbytes(rng.randrange(0, 300))
        else:
            yield "crafted", crafted(rng, model_id, seed_file)
        made += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("-m", "--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-growth", type=float, default=200.0, help="MB of max-RSS growth allowed after warm-up")
    parser.add_argument("--cli-sample", type=int, default=100, help="cases also run through the CLI")
    args = parser.parse_args()

    model = load_model(args.model)
    codec = Codec(model, max_pixels=1 << 22)  # crafted headers may claim big images: keep each case quick
    rng = random.Random(args.seed)
    yy, xx = np.mgrid[0:48, 0:64]
    image = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], axis=2).astype(np.uint8)
    seed_file = codec.encode(Picture(image), 1, reconstruct=False).data
    signal.signal(signal.SIGALRM, _alarm)
    counts: dict[str, dict[str, int]] = {}
    failures: list[str] = []
    cli_samples: list[bytes] = []
    rss_start = None
    started = time.time()
    slowest = 0.0
    for i, (kind, data) in enumerate(cases(rng, seed_file, model.model_id, args.cases)):
        if i == 200:
            rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        try:
            codec.decode(data)
            outcome = "image"
        except DecodeError as exc:
            outcome = "error"
            if "\n" in str(exc):
                failures.append(f"{kind}: multi-line error {str(exc)[:80]!r}")
        except Timeout:
            outcome = "timeout"
            failures.append(f"{kind}: timeout after {args.timeout}s")
        except Exception as exc:  # anything else is a bug
            outcome = "crash"
            failures.append(f"{kind}: {type(exc).__name__}: {str(exc)[:100]}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - t0)
        counts.setdefault(kind, {}).setdefault(outcome, 0)
        counts[kind][outcome] += 1
        if len(cli_samples) < args.cli_sample and rng.random() < args.cli_sample / args.cases * 2:
            cli_samples.append(data)
    elapsed = time.time() - started
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - (rss_start or 0)
    if growth > args.max_growth:
        failures.append(f"max RSS grew by {growth:.0f} MB")

    cli_bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or "default"
        for k, data in enumerate(cli_samples):
            f = Path(tmp) / f"case{k}.aec"
            f.write_bytes(data)
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "aecompress",
                    "decode",
                    "-m",
                    model_path,
                    "--max-pixels",
                    str(1 << 22),
                    str(f),
                    "-o",
                    str(Path(tmp) / f"out{k}.png"),
                ],
                capture_output=True,
                text=True,
            )
            lines = r.stderr.strip().splitlines()
            ok = (r.returncode == 0) or (r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr)
            if not ok:
                cli_bad += 1
                failures.append(f"cli: exit {r.returncode}: {r.stderr.strip()[:200]!r}")

    total = sum(sum(v.values()) for v in counts.values())
    print(f"{total} cases in {elapsed:.0f} s (slowest {slowest * 1000:.0f} ms), max-RSS growth after warm-up {growth:.1f} MB")
    for kind, outcomes in counts.items():
        print(f"  {kind:<13} " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(f"  CLI sample   {len(cli_samples)} cases, {len(cli_samples) - cli_bad} with exit 0 or a one-line error and exit 1")
    print(f"failures: {len(failures)}")
    for f in failures[:20]:
        print("  " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
