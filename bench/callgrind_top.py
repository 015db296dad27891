#!/usr/bin/env python3
"""Where the instructions of one callgrind dump go, per function.

    bench/callgrind_top.py self    DIR/callgrind.out.1 DIR/callgrind.out.2 [N]
    bench/callgrind_top.py incl    ...   (inclusive cost of each call site's callee)
    bench/callgrind_top.py callers FUNCTION ...   (who calls FUNCTION, how often)

For the dumps `KEEP=dir bench/instructions.sh` leaves (a build with symbols:
see BENCHMARKS.md "Running them"). The figures are of the LAST file given;
the earlier ones are read only for the names they define (callgrind writes
a name once, then only its number, across the dumps of one run), which is
why `callgrind_annotate` cannot read a later dump on its own. Functions
(fn=, cfn=) and files (fl=, fi=, fe=, cfi=, cfl=) are numbered in separate
spaces: only function numbers are resolved here (mixing the two spaces is
how an earlier reader of ours blamed tracing for others' costs).
"""
import collections
import re
import sys

NAME = re.compile(r"\((\d+)\)(?: (.*))?")


def read(files):
    names, own, incl, calls = {}, collections.Counter(), collections.Counter(), collections.Counter()

    def fn(text):
        m = NAME.match(text)
        if not m:
            return text
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return m.group(1)

    for i, path in enumerate(files):
        last = i == len(files) - 1
        cur = cfn = None
        after_calls = False
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith("fn="):
                    cur = fn(line[3:])
                elif line.startswith("cfn="):
                    cfn = fn(line[4:])
                elif line.startswith("calls="):
                    after_calls = True
                    if last:
                        calls[(cur, cfn)] += int(line[6:].split()[0])
                elif line and (line[0].isdigit() or line[0] in "+-*"):
                    parts = line.split()
                    if len(parts) < 2 or not last:
                        after_calls = False
                        continue
                    cost = int(parts[1])
                    if after_calls:
                        if cfn != cur:
                            incl[cfn] += cost
                    else:
                        own[cur] += cost
                    after_calls = False
    return names, own, incl, calls


def main(argv):
    if len(argv) < 3 or argv[1] not in ("self", "incl", "callers"):
        sys.exit(__doc__)
    mode = argv[1]
    if mode == "callers":
        target, files = argv[2], argv[3:]
    else:
        files = [a for a in argv[2:] if not a.isdigit()]
        top = int(next((a for a in argv[2:] if a.isdigit()), 40))
    names, own, incl, calls = read(files)
    total = sum(own.values())
    if mode == "callers":
        by = collections.Counter()
        for (caller, callee), n in calls.items():
            if names.get(callee, callee) == target:
                by[caller] += n
        print(f"{sum(by.values())} calls of {target}")
        for caller, n in by.most_common(40):
            print(f"{n:>8} {names.get(caller, caller)[:160]}")
        return
    costs = own if mode == "self" else incl
    for key, cost in costs.most_common(top):
        print(f"{cost / total * 100:6.2f}% {names.get(key, key)[:160]}")
    print(f"total instructions (self): {total}")


if __name__ == "__main__":
    main(sys.argv)
