"""python -m memsaver [--pid PID | --socket PATH] COMMAND: a pure-Python
client of the control socket, for hosts without the `memsaver` CLI.

    python -m memsaver status
    python -m memsaver --pid 4242 pause kv,graph
    python -m memsaver resume
    python -m memsaver snapshot after_load
    python -m memsaver report /tmp/report.json

Exit status: 0 success, 1 the operation failed, 2 bad usage or no target
(the same as `memsaver ctl`)."""

import argparse
import json
import sys

from . import MemsaverError, control


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m memsaver", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int)
    ap.add_argument("--socket")
    ap.add_argument("command", choices=["status", "pause", "resume", "snapshot", "report"])
    ap.add_argument("arg", nargs="?", help="tags (pause/resume), label (snapshot), path (report)")
    a = ap.parse_args(argv)
    fields = {}
    if a.command in ("pause", "resume") and a.arg:
        fields["tags"] = a.arg
    elif a.command == "snapshot":
        if not a.arg:
            ap.error("snapshot needs a label")
        fields["label"] = a.arg
    elif a.command == "report" and a.arg:
        fields["path"] = a.arg
    try:
        r = control(a.command, pid=a.pid, socket=a.socket, **fields)
    except MemsaverError as e:
        print(f"memsaver: {e}", file=sys.stderr)
        return 2 if e.code is None and "sockets found" in str(e) else 1
    except OSError as e:
        print(f"memsaver: {e}", file=sys.stderr)
        return 1
    if a.command == "status":
        print(json.dumps(r["status"], indent=2))
    elif a.command == "report":
        print(json.dumps(r["report"], indent=2))
    else:
        print(json.dumps({k: v for k, v in r.items() if k != "ok"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
