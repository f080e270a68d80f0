#!/usr/bin/env python3
"""A pause copies only the backup chunks that changed (saver/digest.h): on a
GPU, under `memsaver run -p bench/policies/wrap-all.json`, a 2 GiB "weights"
tensor goes through CYCLES pause/resume cycles; before each pause a few
bytes at random places change (an RL weight update), or nothing changes; after
each resume the tensor must equal the host's copy bitwise, and the pause must
have copied exactly the changed chunks.  One JSON line per cycle, a summary.

usage: memsaver run -p bench/policies/wrap-all.json -- python3 bench/skip_check.py [--cycles 20]
"""
import argparse
import ctypes
import json
import random
import time

import torch

CHUNK = 16 << 20  # MEMSAVER_CHUNK default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--gib", type=float, default=2.0)
    args = ap.parse_args()
    lib = ctypes.CDLL(None)
    lib.msv_last_error.restype = ctypes.c_char_p
    n = int(args.gib * (1 << 30))
    w = torch.randint(0, 256, (n,), dtype=torch.uint8, device="cuda")
    host = w.cpu()
    rng = random.Random(7)
    ok, rows = True, []
    for c in range(args.cycles):
        changed = set()
        if c >= 2 and c % 2 == 0:  # every other cycle after the first two: an update
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(n)
                v = (int(host[pos]) + 1 + rng.randrange(255)) % 256
                host[pos] = v
                w[pos] = v
                changed.add(pos // CHUNK)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        rc_p = lib.msv_pause(None)
        t1 = time.perf_counter()
        rc_r = lib.msv_resume(None)
        t2 = time.perf_counter()
        equal = bool(torch.equal(w.cpu(), host))
        rows.append({"cycle": c, "changed_chunks": len(changed), "pause_ms": round((t1 - t0) * 1e3, 1),
                     "resume_ms": round((t2 - t1) * 1e3, 1), "rc": [rc_p, rc_r], "bitwise_equal": equal})
        print(json.dumps(dict(bench="skip_check", **rows[-1])), flush=True)
        ok &= equal and rc_p == 0 and rc_r == 0
    later = sorted(r["pause_ms"] for r in rows[1:])
    print(json.dumps({"bench": "skip_check_summary", "ok": ok, "cycles": args.cycles, "gib": args.gib,
                      "first_pause_ms": rows[0]["pause_ms"], "later_pause_ms_median": later[len(later) // 2],
                      "error": lib.msv_last_error().decode()}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
