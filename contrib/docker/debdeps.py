#!/usr/bin/env python3
"""Are a Dockerfile stage's Debian packages enough?  (Debian only.)

    debdeps.py PACKAGES_FILE --strace TRACE...
    debdeps.py PACKAGES_FILE --files FILE_LIST

PACKAGES_FILE lists the packages a stage installs (one a line).  The files
the stage used are the ones `strace -f -e trace=execve,open,openat` logs as
opened or executed (TRACE), or those FILE_LIST names, one a line (libraries
and programs the runtime needs).  Each file
that a Debian package owns must belong to one of the stage's packages, their
dependencies (recursively), or the packages every debian:12-slim image has
(priority "required", essential, and apt).  This machine has more packages
than the image; a file from one the stage does not install means the image
build would fail, or the container would, where this machine does not.

Prints the uncovered packages with example files and exits 1, else 0.
"""

import os
import re
import subprocess
import sys

ALT = (("/usr/lib/", "/lib/"), ("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/"),
       ("/usr/lib64/", "/lib64/"))


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def base_packages():
    out = run(["dpkg-query", "-W", "-f", "${Package}\t${Priority}\t${Essential}\n"])
    base = {"apt"}
    for line in out.splitlines():
        name, prio, ess = (line.split("\t") + ["", ""])[:3]
        if prio == "required" or ess == "yes":
            base.add(name)
    return base


def closure(pkgs):
    out = run(["apt-cache", "depends", "--recurse", "--no-recommends",
               "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
               "--no-enhances"] + sorted(pkgs))
    names = set(pkgs)
    for line in out.splitlines():
        if line and not line.startswith(" "):
            names.add(line.strip().strip("<>").split(":")[0])
    return names


def spellings(p):
    """p, where its symlinks lead, and the /usr-merged twins of both."""
    out = []
    for q in (p, os.path.realpath(p)):
        for a, b in ALT:
            if q.startswith(a):
                out += [q, b + q[len(a):]]
                break
            if q.startswith(b):
                out += [q, a + q[len(b):]]
                break
        else:
            out.append(q)
    return list(dict.fromkeys(out))


def owners(paths):
    """path -> set of packages that own it (dpkg -S)."""
    cands = {p: spellings(p) for p in paths}
    allc = sorted({c for v in cands.values() for c in v})
    found = {}
    for i in range(0, len(allc), 400):
        out = run(["dpkg", "-S"] + allc[i:i + 400])
        for line in out.splitlines():
            if line.startswith("diversion ") or ": " not in line:
                continue
            pk, _, p = line.rpartition(": ")
            found.setdefault(p, set()).update(
                x.strip().split(":")[0] for x in pk.split(","))
    res = {}
    for p, cs in cands.items():
        for c in cs:
            if c in found:
                res[p] = found[c]
                break
    return res


# Read because they are there, not because the build needs them: aclocal
# scans every macro file, ldconfig and the C library read their
# configuration, gettext looks for translations.
OPPORTUNISTIC = ("/usr/share/aclocal/", "/etc/", "/usr/share/locale/",
                 "/usr/lib/locale/", "/usr/share/zoneinfo/")
SKIP = ("/tmp/", "/proc/", "/sys/", "/dev/", "/run/")
TRACED = re.compile(r'^\d+\s+(?:execve|openat|open)\((?:AT_FDCWD, )?"([^"]+)"(.*)\) = \d+')


def traced_files(traces):
    seen = set()
    for t in traces:
        with open(t, errors="replace") as f:
            for line in f:
                m = TRACED.match(line)
                if not m or "O_DIRECTORY" in m.group(2):
                    continue
                p = m.group(1)
                if p.startswith("/") and not p.startswith(SKIP + OPPORTUNISTIC):
                    seen.add(os.path.normpath(p))
    return seen


def main(argv):
    if len(argv) < 4 or argv[2] not in ("--strace", "--files") or \
            (argv[2] == "--files" and len(argv) != 4):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        stage = {l.strip() for l in f if l.strip()}
    if argv[2] == "--strace":
        files = sorted(traced_files(argv[3:]))
    else:
        with open(argv[3]) as f:
            files = sorted({l.strip() for l in f if l.strip().startswith("/")})
    base = base_packages()
    have = closure(stage | base)
    own = owners(files)
    missing = {}
    for p, pk in own.items():
        if not pk & have:
            for k in pk:
                missing.setdefault(k, []).append(p)
    unowned = [p for p in files if p not in own]
    print("%d files, %d owned by %d Debian packages; the stage has %d packages "
          "(%d with dependencies and the slim base)" % (
              len(files), len(own), len({k for v in own.values() for k in v}),
              len(stage), len(have)))
    if unowned:
        print("not from any Debian package (not checked): %s%s" % (
            " ".join(unowned[:6]), " ..." if len(unowned) > 6 else ""))
    for k in sorted(missing):
        print("MISSING: %s (used: %s%s)" % (
            k, " ".join(missing[k][:3]), " ..." if len(missing[k]) > 3 else ""))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
