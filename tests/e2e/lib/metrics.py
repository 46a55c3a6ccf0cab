"""Shared by the Python checks of the train e2e tests: metrics.jsonl records and a check
printer. Imported with sys.path.insert(0, PYLIB) (tests/e2e/lib/train_common.sh)."""
import json

ok = True


def records(path):
    """(memory_start, memory_end, comm_theory, step records) of a metrics.jsonl."""
    r = [json.loads(line) for line in open(path)]
    event = lambda e: next(x for x in r if x.get("event") == e)
    return event("memory_start"), event("memory_end"), event("comm_theory"), [x for x in r if "loss" in x]


def check(cond, what):
    """Print ok/FAIL for one condition; the module's `ok` remembers any failure."""
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok &= bool(cond)
