#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""List the functions the public headers declare with CCVM_API.

Usage: api-symbols.py [--unmarked] HEADER...

Prints one name a line, sorted.  With --unmarked, prints instead every
file-scope function declaration that is not static and lacks CCVM_API
(as FILE:LINE: NAME), so `make check-exports` can insist on the mark.
"""
import re
import sys

DECL = re.compile(r'^(?!static\b|typedef\b|#|extern\b|struct\s+\w+\s*\{|enum\b|union\b)'
                  r'(CCVM_API\s+)?[A-Za-z_][\w\s\*]*?\b(ccvm_\w+)\s*\(')


def strip_comments(text):
    # Keep line structure: replace comment bodies by spaces.
    def repl(m):
        return re.sub(r'[^\n]', ' ', m.group(0))
    text = re.sub(r'/\*.*?\*/', repl, text, flags=re.S)
    return re.sub(r'//[^\n]*', repl, text)


def scan(path):
    marked, unmarked = [], []
    depth = 0
    with open(path) as f:
        text = strip_comments(f.read())
    for lineno, line in enumerate(text.split('\n'), 1):
        if depth == 0 and not line.startswith((' ', '\t')):
            m = DECL.match(line)
            if m:
                (marked if m.group(1) else unmarked).append((lineno, m.group(2)))
        depth += line.count('{') - line.count('}')
        # extern "C" { opens a brace that does not nest declarations.
        if line.startswith('extern "C"'):
            depth -= 1
        if line.startswith('}') and depth < 0:
            depth = 0
    return marked, unmarked


def main(argv):
    unmarked_mode = argv[:1] == ['--unmarked']
    names, bad = set(), []
    for path in argv[1:] if unmarked_mode else argv:
        marked, unmarked = scan(path)
        names.update(n for _, n in marked)
        bad.extend(f'{path}:{ln}: {n}' for ln, n in unmarked)
    for line in (bad if unmarked_mode else sorted(names)):
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
