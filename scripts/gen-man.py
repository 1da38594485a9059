#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Man pages (section 3) for libccvm's public API, from its header comments.

Usage:
  gen-man.py --check HEADER...            every CCVM_API declaration has a
                                          comment with Context:, Return:, Example:
  gen-man.py --out DIR --version V HEADER...   write DIR/<name>.3

A comment documents the CCVM_API declarations that follow it up to the next
blank line (preprocessor lines and attributes may stand between them): a
group gets one page, written once per function of the group (each
titled with its own name), so no page depends on a .so link.

The comment's text is the page: an optional first line `name() - summary`
(or `a() / b() - summary`), the description, then `Context:` (the thread,
locks and state the call needs; the CONTEXT section), `Return:` (RETURN
VALUE; each `-EXXX (why)` piece separated by ';' also goes to ERRORS) and
`Example:` alone on its line, then the EXAMPLE: indented code lines to the
end of the comment (`//` comments inside), a non-static function or a
whole program, which compiles alone after the page's #include lines.
`--check` insists on all three.  Hand-written pages in man/man3 (the
overviews) are linted and installed beside them.

  gen-man.py --extract DIR PAGE...        write each distinct EXAMPLE of the
                                          pages as DIR/<page>.c, with a #line
                                          pointing at its header comment
"""
import os
import re
import sys

DECL_START = re.compile(r'^CCVM_API\b')
NAME = re.compile(r'\b(ccvm_\w+)\s*\(')
OVERVIEW = {
    'ccvm/ccvm.h': 'libccvm',
    'ccvm/backend.h': 'libccvm-backend',
    'ccvm/sync.h': 'libccvm-sync',
    'ccvm/explore.h': 'libccvm-explore',
}
KEYS = ('Context:', 'Return:', 'Example:')
# `--check` wants an example in every group too.
EXAMPLE_REQUIRED = ('Example:',)


def read_groups(path):
    """[(comment_lines, [(name, decl_text, line)], comment_line)] for one
    header; lines are 1-based."""
    lines = open(path).read().split('\n')
    groups = []
    i = 0
    comment, comment_end, comment_start = None, -1, 0
    current = None
    while i < len(lines):
        line = lines[i]
        if line.startswith('/*'):
            start = i
            while '*/' not in lines[i]:
                i += 1
            comment, comment_end, comment_start = lines[start:i + 1], i, start + 1
            current = None
            i += 1
            continue
        if DECL_START.match(line):
            start = i
            while ';' not in lines[i]:
                i += 1
            text = '\n'.join(lines[start:i + 1])
            name = NAME.search(text).group(1)
            # Attached if only preprocessor lines, attributes and earlier
            # declarations of the group stand between it and the comment.
            between = lines[comment_end + 1:start] if comment is not None else None
            attached = between is not None and all(
                b.startswith(('#', 'CCVM_API', '\t', ' ', '[[', '_Noreturn'))
                and b.strip() != '' for b in between)
            if attached and current is not None and current[0] is comment:
                current[1].append((name, text, start + 1))
            elif attached:
                current = (comment, [(name, text, start + 1)], comment_start)
                groups.append(current)
            else:
                current = None
                groups.append((None, [(name, text, start + 1)], 0))
            i += 1
            continue
        if line.strip() == '':
            comment, current = None, None
        i += 1
    return groups


def comment_text(comment):
    out = []
    for line in comment:
        line = line.strip()
        line = re.sub(r'^/\*+', '', line)
        line = re.sub(r'\*+/$', '', line)
        line = re.sub(r'^\* ?', '', line)
        out.append(line.rstrip())
    while out and out[0] == '':
        out.pop(0)
    while out and out[-1] == '':
        out.pop()
    return out


def split_sections(lines):
    """description lines, {key: text lines}; keys may start mid-line."""
    sections = {'': []}
    key = ''
    for line in lines:
        while True:
            hits = [(line.find(k), k) for k in KEYS if k in line]
            if not hits or key == 'Example:':
                sections[key].append(line)
                break
            pos, k = min(hits)
            if line[:pos].strip():
                sections[key].append(line[:pos].rstrip())
            key = k
            sections.setdefault(key, [])
            line = line[pos + len(k):].strip()
            if not line:
                break
    return sections


def esc(s):
    s = s.replace('\\', '\\e')
    s = re.sub(r'(^|[\s(])-(?=[A-Z0-9])', r'\1\\-', s)
    return s


def para(lines):
    """Text lines to roff paragraphs, joined, one sentence-ish per line."""
    out, cur = [], []
    for line in lines + ['']:
        if line.strip() == '':
            if cur:
                text = esc(' '.join(cur))
                for part in re.split(r'(?<=[.;:])\s+', text):
                    if part:
                        out.append(('\\&' + part) if part[0] in ".'" else part)
                out.append('.PP')
                cur = []
        elif line.startswith(('\t', '    ')) and not cur:
            out += ['.nf', esc(line.strip()), '.fi', '.PP']
        else:
            cur.append(line.strip())
    while out and out[-1] == '.PP':
        out.pop()
    return out


# Code in an EXAMPLE block: a backslash is \e, every hyphen-minus \- and
# every apostrophe \(aq (groff would print a Unicode hyphen and a right
# quote, which do not compile when pasted), a line starting with a control
# character gets \& before it.  Blank lines stay blank (no-fill mode).
CODE_ESC = (('\\', '\\e'), ('-', '\\-'), ("'", '\\(aq'))


def example_code(lines):
    """The Example: block's lines: tabs to 4 spaces, common indentation off."""
    code = [l.replace('\t', '    ').rstrip() for l in lines]
    ind = min((len(l) - len(l.lstrip()) for l in code if l.strip()), default=0)
    return [l[ind:] for l in code]


def code_esc(line):
    for a, b in CODE_ESC:
        line = line.replace(a, b)
    return ('\\&' + line) if line.startswith(('.', "'", '\\(aq')) else line


def code_unesc(line):
    if line.startswith('\\&'):
        line = line[2:]
    out, i = [], 0
    while i < len(line):
        for a, b in reversed(CODE_ESC):
            if line.startswith(b, i):
                out.append(a)
                i += len(b)
                break
        else:
            out.append(line[i])
            i += 1
    return ''.join(out)


def example_roff(code, source):
    """An EXAMPLE section's body; @source ("path:line" of the first code
    line) is kept in a comment so that the build can point a compiler
    error at the header line it comes from."""
    body = [code_esc(l) for l in code]
    if [code_unesc(l) for l in body] != code:
        raise ValueError('%s: the example does not survive roff escaping' % source)
    return (['.\\" example-source: %s' % source] if source else []) + ['.EX'] + body + ['.EE']


PLAIN = {
    'ENOMEM': 'Out of memory: host memory, or the platform\'s simulated RAM.',
    'EIO': 'The VM is bugged or dead.',
    'EINVAL': 'An argument is invalid.',
    'EFAULT': 'A memory fault: the access does not match the attribute or backing.',
}


def errors(ret_lines):
    text = ' '.join(l.strip() for l in ret_lines)
    out, seen = [], set()
    for piece in re.split(r';\s*', text):
        m = re.search(r'-(E[A-Z]+)\b(.*)', piece)
        if not m or m.group(1) in seen:
            continue
        seen.add(m.group(1))
        why = m.group(2).strip().rstrip('.')
        if why.startswith('(') and why.endswith(')'):
            why = why[1:-1]
        why = why.strip(' ,:')
        if not why:
            why = PLAIN.get(m.group(1), '')
        elif not why.endswith('.'):
            why = why[0].upper() + why[1:] + '.'
        out += ['.TP', '.B ' + m.group(1)] + ([esc(why)] if why else [])
    return out


def cap(lines):
    for i, l in enumerate(lines):
        if l.strip():
            lines = list(lines)
            lines[i] = l[0].upper() + l[1:]
            break
    return lines


def page(header, comment, decls, version, date, source=None):
    names = [n for n, _, _ in decls]
    lines = comment_text(comment)
    summary = None
    if lines:
        m = re.match(r'^(.*\(\).*?)\s+-(?:\s+(.*)|$)', lines[0])
        if m:
            # The summary is the first sentence; the rest of the paragraph
            # starts the description.
            para_lines = [m.group(2) or '']
            rest = lines[1:]
            while rest and rest[0] and not any(k in rest[0] for k in KEYS):
                para_lines.append(rest.pop(0))
            text = ' '.join(l for l in para_lines if l)
            parts = re.split(r'(?<=[.)])\s+(?=[A-Z@(])', text, maxsplit=1)
            summary = parts[0]
            lines = ([parts[1]] if len(parts) > 1 else []) + rest
            if len(summary.rstrip('.')) > 90:
                # NAME gets its head (below); the description keeps it whole.
                lines = [' '.join(parts)] + rest
    sec = split_sections(lines)
    if summary is None:
        first = ' '.join(l for l in sec[''] if l).split('. ')[0] if sec[''] else names[0]
        summary = first
    summary = summary.rstrip('.')
    summary = summary.split(': ')[0] if len(summary) > 90 else summary
    title = decls[0][0].upper()
    out = [
        '.\\" SPDX-License-Identifier: MIT',
        '.\\" Generated by scripts/gen-man.py from %s: edit the header, not this file.' % header,
        '.TH %s 3 %s "libccvm %s" "libccvm Programmer\'s Manual"' % (title.replace('_', '\\_'), date, version),
        '.SH NAME',
        '%s \\- %s' % (', '.join(n.replace('_', '\\_') for n in names), esc(summary)),
        '.SH SYNOPSIS',
        '.nf',
        '.B #include <%s>' % header,
        '.PP',
    ]
    for _, text, _ in decls:
        text = text.replace('CCVM_API ', '')
        text = re.sub(r'\s*#if defined\(__GNUC__\).*?#endif\s*', ' ', text, flags=re.S)
        text = re.sub(r'\s+', ' ', text).strip()
        text = text.replace('( ', '(').replace(' ;', ';')
        out.append('.BI "%s"' % esc(text).replace('"', '\\(dq'))
    out += ['.fi']
    if sec[''] and any(l.strip() for l in sec['']):
        out += ['.SH DESCRIPTION'] + para(sec[''])
    if sec.get('Context:'):
        out += ['.SH CONTEXT'] + para(cap(sec['Context:']))
    if sec.get('Return:'):
        out += ['.SH RETURN VALUE'] + para(cap(sec['Return:']))
        err = errors(sec['Return:'])
        if err:
            out += ['.SH ERRORS'] + err
    if sec.get('Example:'):
        out += ['.SH EXAMPLE'] + example_roff(example_code(sec['Example:']), source)
    text = '\n'.join(comment or []).split('Example:')[0]
    seealso = sorted(set(re.findall(r'\b(ccvm_\w+)\(\)', text)) - set(names))
    refs = ['.BR %s (3)' % OVERVIEW[header]] + ['.BR %s (3)' % s for s in seealso]
    out += ['.SH SEE ALSO'] + [r + (',' if i < len(refs) - 1 else '') for i, r in enumerate(refs)]
    return '\n'.join(out) + '\n'


def example_source(path, comment, comment_line):
    """"path:line" of the first code line of the comment's Example: block,
    or None; the keyword must end its line."""
    for k, l in enumerate(comment):
        if 'Example:' in l:
            if l.split('Example:', 1)[1].strip():
                raise ValueError('%s:%d: Example: must end its line'
                                 % (path, comment_line + k))
            return '%s:%d' % (path, comment_line + k + 1)
    return None


def extract(outdir, pages):
    """Write each distinct EXAMPLE of @pages as outdir/<page>.c, ready to
    compile alone: the page's #include lines, then a #line that points
    errors at the example's source (the header comment, or the page).
    The pages of one group carry one example: it is written once, named
    after the first page.  Prints the files written."""
    seen = {}
    for pg in sorted(pages):
        lines = open(pg).read().split('\n')
        if '.EX' not in lines:
            continue
        start = lines.index('.EX') + 1
        end = lines.index('.EE', start)
        code = [code_unesc(l) for l in lines[start:end]]
        src = 'man/man3/%s:%d' % (os.path.basename(pg), start + 1)
        for l in lines[:start]:
            if l.startswith('.\\" example-source: '):
                src = l.split(': ', 1)[1]
        key = '\n'.join(code)
        if key in seen:
            continue
        name = os.path.basename(pg)[:-2]
        seen[key] = name
        incs = ['#include <ccvm/ccvm.h>'] + [
            '#include <%s>' % m for m in re.findall(r'^\.B #include <(ccvm/\w+\.h)>',
                                                    '\n'.join(lines), re.M)
            if m != 'ccvm/ccvm.h']
        path, line = src.rsplit(':', 1)
        with open(os.path.join(outdir, name + '.c'), 'w') as f:
            f.write('\n'.join(incs + ['#line %s "%s"' % (line, path)] + code) + '\n')
        print(name + '.c')
    return 0


def main(argv):
    mode, outdir, version, date, headers = None, None, '', '1970-01-01', []
    it = iter(argv)
    for a in it:
        if a == '--check':
            mode = 'check'
        elif a == '--out':
            mode, outdir = 'out', next(it)
        elif a == '--extract':
            mode, outdir = 'extract', next(it)
        elif a == '--version':
            version = next(it)
        elif a == '--date':
            date = next(it)
        else:
            headers.append(a)
    if mode == 'extract':
        return extract(outdir, headers)
    bad = []
    pages = 0
    for path in headers:
        header = 'ccvm/' + os.path.basename(path)
        for comment, decls, comment_line in read_groups(path):
            names = [n for n, _, _ in decls]
            if comment is None:
                bad.append('%s:%d: %s: no comment' % (path, decls[0][2], names[0]))
                continue
            text = '\n'.join(comment)
            for k in ('Context:', 'Return:') + (EXAMPLE_REQUIRED if mode == 'check' else ()):
                if k not in text:
                    bad.append('%s:%d: %s: no %s' % (path, decls[0][2], ', '.join(names), k))
            try:
                source = example_source(path, comment, comment_line)
            except ValueError as e:
                bad.append(str(e))
                continue
            if mode == 'out':
                if header not in OVERVIEW:
                    bad.append('%s: no overview page' % path)
                    continue
                # Every function of a group gets the group's whole page
                # (titled with its own name) rather than a .so link.
                for k, n in enumerate(names):
                    order = [decls[k]] + decls[:k] + decls[k + 1:]
                    try:
                        text = page(header, comment, order, version, date, source)
                    except ValueError as e:
                        bad.append(str(e))
                        break
                    with open(os.path.join(outdir, n + '.3'), 'w') as f:
                        f.write(text)
                pages += len(names)
    for b in bad:
        print(b, file=sys.stderr)
    if mode == 'out':
        print('%d pages' % pages)
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
