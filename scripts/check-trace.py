#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check a Chrome trace-event JSON file as Perfetto's and Chrome's JSON
importers read it, plus the promises libccvm's writer makes.

Usage: check-trace.py [--vcpus N] [--max-bytes N] [--clock wall|sim]
                      [--only cat,cat] FILE

The format (the Trace Event Format document): an object with a
"traceEvents" array; each event an object with a string "name", a "ph"
among the known phases, integer "pid" and "tid", a number "ts" >= 0 (but
metadata), "dur" >= 0 for complete (X) events, "s" in g/p/t for instant
events, and "args" an object.  Complete events of one lane must nest (an
importer flags overlapping slices).

libccvm's promises: every (pid, tid) used has process_name and thread_name
metadata; with --vcpus N, N lanes named "vCPU <i>" carry events; one
spelling per event name (names that differ only in case or in '.', '_',
'-' are an error); --max-bytes: the file is at most that plus the closing
record's size, and otherData says how many records were dropped; --clock:
otherData.clock says which; --only: no category but those.
"""
import json
import re
import sys

PHASES = set('BEXiIMCbenstfPONDRc(){}')
META = {'process_name', 'thread_name', 'process_sort_index', 'thread_sort_index',
        'process_labels'}


def fail(errors, msg):
    errors.append(msg)


def main(argv):
    opts = {'vcpus': 0, 'max_bytes': 0, 'clock': None, 'only': None}
    args = list(argv)
    path = None
    while args:
        a = args.pop(0)
        if a == '--vcpus':
            opts['vcpus'] = int(args.pop(0))
        elif a == '--max-bytes':
            opts['max_bytes'] = int(args.pop(0), 0)
        elif a == '--clock':
            opts['clock'] = args.pop(0)
        elif a == '--only':
            opts['only'] = set(args.pop(0).split(','))
        else:
            path = a
    if not path:
        print(__doc__, file=sys.stderr)
        return 2
    raw = open(path, 'rb').read()
    errors = []
    try:
        doc = json.loads(raw)
    except ValueError as e:
        print('%s: not JSON: %s' % (path, e), file=sys.stderr)
        return 1
    events = doc.get('traceEvents') if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        print('%s: no traceEvents array' % path, file=sys.stderr)
        return 1

    proc_names, thread_names, used = {}, {}, set()
    spellings = {}
    lanes = {}
    cats = set()
    for n, e in enumerate(events):
        where = '%s: event %d' % (path, n)
        if not isinstance(e, dict):
            fail(errors, '%s: not an object' % where)
            continue
        name, ph = e.get('name'), e.get('ph')
        if not isinstance(name, str) or not name:
            fail(errors, '%s: no name' % where)
        if ph not in PHASES:
            fail(errors, '%s: phase %r unknown' % (where, ph))
        for k in ('pid', 'tid'):
            if not isinstance(e.get(k), int):
                fail(errors, '%s: %s is not an integer' % (where, k))
        if 'args' in e and not isinstance(e['args'], dict):
            fail(errors, '%s: args is not an object' % where)
        if ph == 'M':
            if name not in META:
                fail(errors, '%s: metadata %r unknown' % (where, name))
            if name in ('process_name', 'thread_name'):
                label = e.get('args', {}).get('name')
                if not isinstance(label, str) or not label:
                    fail(errors, '%s: %s without args.name' % (where, name))
                elif name == 'process_name':
                    proc_names[e['pid']] = label
                else:
                    thread_names[(e['pid'], e['tid'])] = label
            continue
        ts = e.get('ts')
        if not isinstance(ts, (int, float)) or ts < 0:
            fail(errors, '%s: ts %r is not a number >= 0' % (where, ts))
            continue
        if not isinstance(e.get('cat'), str):
            fail(errors, '%s: no category' % where)
        else:
            cats.add(e['cat'])
        if ph == 'X':
            dur = e.get('dur')
            if not isinstance(dur, (int, float)) or dur < 0:
                fail(errors, '%s: X event without a dur >= 0' % where)
                continue
            lanes.setdefault((e['pid'], e['tid']), []).append((ts, ts + dur, n))
        if ph in 'iI' and e.get('s', 't') not in ('g', 'p', 't'):
            fail(errors, '%s: instant scope %r' % (where, e.get('s')))
        used.add((e['pid'], e['tid']))
        if isinstance(name, str):
            key = re.sub(r'[-_. ]', '.', name.lower())
            spellings.setdefault(key, set()).add(name)

    for pid, tid in sorted(used):
        if pid not in proc_names:
            fail(errors, '%s: process %d has no process_name' % (path, pid))
        if (pid, tid) not in thread_names:
            fail(errors, '%s: lane %d/%d has no thread_name' % (path, pid, tid))
    for key, names in sorted(spellings.items()):
        if len(names) > 1:
            fail(errors, '%s: one event, %d spellings: %s' % (path, len(names),
                                                               ', '.join(sorted(names))))
    # Complete events of one lane nest: sorted by start (longest first), each
    # ends before the enclosing one does (a 1 ns slack for the rounding).
    for lane, xs in lanes.items():
        stack = []
        for start, end, n in sorted(xs, key=lambda x: (x[0], -x[1])):
            while stack and stack[-1] <= start:
                stack.pop()
            if stack and end > stack[-1] + 0.001:
                fail(errors, '%s: event %d overlaps its enclosing slice in lane %d/%d'
                     % (path, n, lane[0], lane[1]))
                break
            stack.append(end)

    vcpu_lanes = sorted({thread_names[l] for l in used if l in thread_names
                         and thread_names[l].startswith('vCPU ')})
    if len(vcpu_lanes) < opts['vcpus']:
        fail(errors, '%s: %d vCPU lanes with events (%s), %d wanted'
             % (path, len(vcpu_lanes), ', '.join(vcpu_lanes), opts['vcpus']))
    other = doc.get('otherData', {}) if isinstance(doc, dict) else {}
    if opts['clock']:
        want = 'simulated' if opts['clock'] == 'sim' else 'wall'
        if other.get('clock') != want:
            fail(errors, '%s: otherData.clock %r, %r wanted' % (path, other.get('clock'), want))
    if opts['max_bytes']:
        # The bound is checked before each record: one record and the
        # closing object may pass it.
        if len(raw) > opts['max_bytes'] + 4096:
            fail(errors, '%s: %d bytes, bound %d' % (path, len(raw), opts['max_bytes']))
        if int(other.get('dropped', '0')) == 0:
            fail(errors, '%s: the bound dropped nothing: too loose to test' % path)
    if opts['only'] is not None and not cats <= opts['only']:
        fail(errors, '%s: categories %s beyond %s' % (path, sorted(cats - opts['only']),
                                                       sorted(opts['only'])))
    for e in errors[:20]:
        print(e, file=sys.stderr)
    if errors:
        return 1
    print('  TRACE   %s: %d events, %d processes, %d lanes (%s), categories %s, %d bytes'
          % (path, len(events), len(proc_names), len(thread_names),
             ', '.join(vcpu_lanes) or 'no vCPU', ','.join(sorted(cats)), len(raw)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
