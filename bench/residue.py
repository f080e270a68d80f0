#!/usr/bin/env python3
"""Issue 13 on the GPU: where the memory a pause leaves behind comes from.

Runs two workloads under `memsaver run`, pauses each with `memsaver ctl pause`,
writes the report while paused, resumes and checks parity:

  bench    bench/engines/qwen_like.py (policy bench/policies/qwen-bench.json), the
           engine of bench/proof.py with CUDA graphs;
  hf       a small Llama-shaped model from a config with random weights, HF
           `generate` with a static cache and torch.compile (inductor)
           (inductor, Triton kernels, CUDA graphs), run by this file itself
           (--hf-engine); policy: the defaults, `other` backed up.

One JSON line per workload: footprint, reclaimed, unreclaimed, every source with
its bytes, share of unreclaimed and top site, the unattributed share and whether it
is <= 5% (issue 13's bar), parity after the resume.  Artefacts (reports while
paused, traces, engine logs, text renderings) go to $OUT or --out.  About 2-3
minutes on an H200.

usage: bench/residue.py [--build build] [--out DIR] [--only bench|hf]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_ENGINE = os.path.join(ROOT, "bench/engines/qwen_like.py")
BENCH_POLICY = os.path.join(ROOT, "bench/policies/qwen-bench.json")
HF_POLICY = {"version": 1, "rules": [],
             "actions": {"weights": "backup", "kv": "discard", "graph": "backup", "workspace": "backup",
                         "comm": "keep", "other": "backup"},
             "context": "trim"}
HF_DOC = """A second PyTorch workload for issue 13 (held-out style): a small Llama-shaped
model built from a config with random weights (no download), torch.compile
(inductor, Triton kernels) and HF
`generate` with a static cache.  Greedy-decodes a batch, holds (--hold-dir:
writes HOLD_DIR/hold.0, waits for HOLD_DIR/go.0) so that `memsaver ctl` can
pause and resume it, then decodes again and checks that the tokens are the
same.  JSON lines on stdout: ready (after warm-up), done (parity)."""


def emit(**kw):
    print(json.dumps(kw), flush=True)


def hf_main(argv):
    ap = argparse.ArgumentParser(prog="residue.py --hf-engine", description=HF_DOC)
    ap.add_argument("--hold-dir")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                      num_hidden_layers=args.layers, num_attention_heads=16, num_key_value_heads=4,
                      max_position_embeddings=1024)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    model.generation_config.pad_token_id = 0
    if not args.no_compile:
        # Inductor with Triton kernels.  mode="reduce-overhead" (CUDA graphs) fails
        # in generate on transformers 5.17: the static cache is created lazily
        # inside the first compiled step, so its tensors are graph outputs that
        # the next replay overwrites (seen on an H200, 2026-11-30).  The bench
        # engine covers CUDA graphs.
        model.forward = torch.compile(model.forward, mode="default", fullgraph=False)
    ids = torch.randint(1, cfg.vocab_size, (args.batch, args.prompt), device="cuda")
    mask = torch.ones_like(ids)

    def generate():
        with torch.inference_mode():
            try:
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                     do_sample=False, cache_implementation="static")
            except (TypeError, ValueError) as e:  # an API this transformers lacks: the plain cache
                emit(event="note", what="static cache refused, dynamic cache used", error=str(e)[:300])
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                     do_sample=False)
        torch.cuda.synchronize()
        return out

    first = generate()  # compiles, captures
    second = generate()  # replays
    emit(event="ready", pid=os.getpid(), startup_s=round(time.time() - t0, 2), transformers=transformers.__version__,
         torch=torch.__version__, compiled=not args.no_compile, tokens=int(second.numel()),
         warm_equal=bool(torch.equal(first, second)))
    if args.hold_dir:
        open(os.path.join(args.hold_dir, "hold.0"), "w").close()
        go = os.path.join(args.hold_dir, "go.0")
        while not os.path.exists(go):
            time.sleep(0.01)
    third = generate()
    emit(event="done", parity=bool(torch.equal(second, third)))
    return 0 if torch.equal(second, third) else 1



def ctl(ms, pid, *cmd, timeout=300):
    p = subprocess.run([ms, "ctl", "--pid", str(pid)] + list(cmd), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def summarize(name, report_path, extra):
    r = json.load(open(report_path))
    a = r.get("attribution") or {}
    U = a.get("unreclaimed_bytes") or 0
    srcs = a.get("sources", [])
    total = sum(s["bytes"] for s in srcs)
    un = next((s["bytes"] for s in srcs if s["source"] == "unattributed"), 0)
    MiB = 1 << 20
    emit(bench="residue", workload=name, footprint_mib=round((a.get("footprint_bytes") or 0) / MiB, 1),
         reclaimed_mib=round((a.get("reclaimed_bytes") or 0) / MiB, 1), unreclaimed_mib=round(U / MiB, 1),
         unattributed_mib=round(un / MiB, 1), unattributed_share=round(un / U, 4) if U else None,
         goal_met=bool(U) and abs(un) <= 0.05 * U, conservation_exact=total == U,
         sources=[{"source": s["source"] + (" (%s)" % s["reason"] if s["source"].startswith("category:") else ""),
                   "mib": round(s["bytes"] / MiB, 1), "share": s.get("share_of_unreclaimed"),
                   "count": s.get("count"),
                   "top": [(t["site"], round(t["bytes"] / MiB, 1)) for t in s.get("top_sites", [])[:3]]}
                  for s in srcs],
         recommendations=[(x["action"], round(x["reclaimable_bytes"] / MiB, 1)) for x in r.get("recommendations", [])],
         **extra)


def run_workload(name, ms, out, cmd_tail, policy, hold_name, go_name, timeout):
    hold_dir = tempfile.mkdtemp(prefix="memsaver-residue.")
    trace = os.path.join(out, f"{name}.trace")
    report_exit = os.path.join(out, f"{name}-report-exit.json")
    paused = os.path.join(out, f"{name}-report-paused.json")
    env = dict(os.environ)
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # compile in this process: one trace
    cmd = [ms, "run", "--log", "info", "-p", policy, "--trace", trace, "-o", report_exit, "--",
           sys.executable] + cmd_tail + ["--hold-dir", hold_dir]
    log = open(os.path.join(out, f"{name}-engine.log"), "w")
    t0 = time.time()
    eng = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    ready, lines = None, []
    try:
        for line in eng.stdout:
            lines.append(line)
            if line.startswith("{") and '"ready"' in line:
                ready = json.loads(line)
                break
        hold = os.path.join(hold_dir, hold_name)
        while ready and not os.path.exists(hold) and eng.poll() is None and time.time() - t0 < timeout:
            time.sleep(0.02)
        if not ready or not os.path.exists(hold):
            emit(bench="residue", workload=name, error="the engine did not reach its hold; see "
                 + os.path.join(out, f"{name}-engine.log"))
            return
        pid = ready["pid"]
        rc, txt = ctl(ms, pid, "pause")
        rcr, txtr = ctl(ms, pid, "report", "-o", paused)
        rc2, txt2 = ctl(ms, pid, "resume")
        open(os.path.join(hold_dir, go_name), "w").close()
        rest = eng.stdout.read()
        lines.append(rest)
        eng.wait(timeout=max(30, timeout - (time.time() - t0)))
        done = next((json.loads(l) for l in "".join(lines).splitlines()
                     if l.startswith("{") and '"event": "done"' in l), {})
        if rc != 0 or rcr != 0:
            emit(bench="residue", workload=name, error=f"pause rc {rc}: {txt[-300:]} / report rc {rcr}: {txtr[-300:]}")
            return
        subprocess.run([ms, "report", paused, "-o", os.path.join(out, f"{name}-report-paused.txt")],
                       capture_output=True, timeout=60)
        summarize(name, paused, {"parity": done.get("parity", done.get("ok")), "resume_rc": rc2,
                                 "wall_s": round(time.time() - t0, 1)})
    finally:
        if eng.poll() is None:
            eng.kill()
        log.write("".join(lines))
        log.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hf-engine":
        return hf_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--only", choices=["bench", "hf"])
    args = ap.parse_args()
    ms = os.path.join(args.build, "bin", "memsaver")
    out = args.out or tempfile.mkdtemp(prefix="memsaver-residue.")
    os.makedirs(out, exist_ok=True)
    emit(bench="residue_setup", out=out, memsaver=ms)
    if args.only in (None, "bench"):
        run_workload("bench", ms, out, [BENCH_ENGINE, "--cycles", "1", "--decode-steps", "20"], BENCH_POLICY,
                     "hold.0", "go.0", 150)
    if args.only in (None, "hf"):
        pol = os.path.join(out, "hf-policy.json")
        json.dump(HF_POLICY, open(pol, "w"))
        run_workload("hf", ms, out, [os.path.abspath(__file__), "--hf-engine"], pol, "hold.0", "go.0", 150)
    return 0


if __name__ == "__main__":
    sys.exit(main())
