#!/usr/bin/env python3
"""bench/serve/steps.py TRACE [--gap MS] - where a serve run's wall time goes.

TRACE is the file `ember serve` writes with EMBER_STEP_TRACE=TRACE in its
environment (the format is at the top of src/engine/engine.c): a line per
engine step and per wait for work.  For example

    EMBER_STEP_TRACE=/tmp/steps.txt STEPS=0 THREADS=2 CONCURRENCY=1,16 \\
        bench/serve/run.sh /tmp/serve-work
    bench/serve/steps.py /tmp/steps.txt

The trace is cut into levels where the engine waited for work longer than
--gap milliseconds (default 0: at every wait; a load generator's level
ends with every request done, so the engine waits before the next), and
neighbouring pieces with the same widest decode step are joined again (at
N=1 the engine waits between every two requests).  For each level it prints the share of the level's wall
time, from its first step's start to its last step's end, spent:
  - in the model (em_decode), by kind of step: decode steps as wide as the
    level's widest ("D16" at N=16), narrower decode steps (the ramp and
    the tail of a level), steps with prompt rows and no decode rows, and
    steps where prompt rows join decode rows; and how much of that is
    above each kind's median (steps slowed by whatever else ran on the
    cores, or by the cache's fresh pages);
  - after the model (sampling, text, events and the notifier's wake-up on
    the engine thread), split into the quickest tenth's median times the
    steps (what the work itself takes) and the rest (the engine thread
    waiting for a core: the threads it has just woken run then);
  - building batches, admission and locks between steps;
  - waiting for work (no request to step).
Benchmarks are not tests: nothing here asserts a time.
"""
import argparse
import statistics
import sys


def read(path):
    steps, waits = [], []
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == 'S':
                t = [float(x) for x in w[1:5]]
                steps.append((t, int(w[5]), int(w[6])))
            elif w[0] == 'I':
                waits.append((float(w[1]), float(w[2])))
    return steps, waits


def levels(steps, waits, gap_s):
    """Lists of consecutive steps, cut at waits longer than gap_s and
    joined again where neighbours share their widest decode step."""
    cuts = sorted(b for a, b in waits if b - a > gap_s)
    pieces, cur, ci = [], [], 0
    for s in steps:
        while ci < len(cuts) and cuts[ci] <= s[0][0]:
            if cur:
                pieces.append(cur)
                cur = []
            ci += 1
        cur.append(s)
    if cur:
        pieces.append(cur)
    out = []
    for p in pieces:
        widest = max(d for _, d, _ in p)
        if out and out[-1][0] == widest:
            out[-1][1].extend(p)
        else:
            out.append([widest, p])
    return out


def account(widest, lv, waits):
    t_begin, t_end = lv[0][0][0], lv[-1][0][3]
    wall = t_end - t_begin
    kinds = {}
    after, between = [], 0.0
    for i, (t, d, p) in enumerate(lv):
        if p == 0:
            k = f'decode, {widest} rows' if d == widest else f'decode, fewer than {widest} rows'
        elif d == 0:
            k = 'prompt rows only'
        else:
            k = 'prompt and decode rows'
        c = kinds.setdefault(k, [0, 0.0, [], 0, 0])
        c[0] += 1
        c[1] += t[2] - t[1]
        c[2].append(t[2] - t[1])
        c[3] += d
        c[4] += p
        after.append(t[3] - t[2])
        between += t[1] - t[0]
        if i + 1 < len(lv):
            between += lv[i + 1][0][0] - t[3]
    idle = sum(min(b, t_end) - max(a, t_begin) for a, b in waits if b > t_begin and a < t_end)
    between -= idle
    quick = sorted(after)[: max(1, len(after) // 10)]
    work = statistics.median(quick) * len(after)
    gen = sum(d for _, d, _ in lv)
    print(f'\nlevel: widest decode step {widest} rows; {len(lv)} steps, {gen} decode rows, '
          f'wall {wall:.3f} s ({gen / wall:.1f} decode rows/s)')
    print('| where | steps | rows (decode + prompt) | median ms | seconds | share of wall |')
    print('|---|---:|---:|---:|---:|---:|')
    above = 0.0
    for k in sorted(kinds):
        n, sec, each, d, p = kinds[k]
        med = statistics.median(each)
        above += sec - n * med
        print(f'| model: {k} | {n} | {d} + {p} | {1000 * med:.2f} | {sec:.3f} | {100 * sec / wall:.1f}% |')
    print(f'| model: of the above, the time above each kind\'s median | | | | {above:.3f} | '
          f'{100 * above / wall:.1f}% |')
    rest = sum(after) - work
    print(f'| after the model: the work (quickest tenth\'s median x steps) | | | '
          f'{1000 * statistics.median(quick):.3f} | {work:.3f} | {100 * work / wall:.1f}% |')
    print(f'| after the model: the rest (waiting for a core) | | | | {rest:.3f} | {100 * rest / wall:.1f}% |')
    print(f'| batches, admission, locks between steps | | | | {between:.3f} | {100 * between / wall:.1f}% |')
    print(f'| waiting for work | | | | {idle:.3f} | {100 * idle / wall:.1f}% |')


def main():
    ap = argparse.ArgumentParser(description='Where a serve run\'s wall time goes (EMBER_STEP_TRACE).')
    ap.add_argument('trace')
    ap.add_argument('--gap', type=float, default=0.0, help='a wait longer than this (ms) ends a level')
    a = ap.parse_args()
    steps, waits = read(a.trace)
    if not steps:
        sys.exit(f'{a.trace}: no steps')
    for widest, lv in levels(steps, waits, a.gap / 1000.0):
        account(widest, lv, waits)


if __name__ == '__main__':
    main()
