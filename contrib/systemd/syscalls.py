#!/usr/bin/env python3
"""Check an strace log of hereproxy against a unit's seccomp and socket rules.

    syscalls.py UNIT TRACE

UNIT is a systemd service file; TRACE is the output of `strace -f -o TRACE`
of its ExecStart.  The unit's SystemCallFilter= lines are expanded with
`systemd-analyze syscall-filter` (the groups of the installed systemd) and
every system call in the trace must be allowed by them; RestrictAddressFamilies=
must allow every socket() family; with MemoryDenyWriteExecute=yes no mapping
may be writable and executable at once.  Exit 0 when the trace fits the unit,
1 when it does not, 2 on usage errors.
"""

import re
import subprocess
import sys


def unit_values(path, key):
    """Every value of KEY= in the [Service] section, in order."""
    vals, section = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                if k.strip() == key:
                    vals.append(v.strip())
    return vals


def filter_groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                         check=True, capture_output=True, text=True).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            cur = groups.setdefault(line.split()[0], [])
        elif line.startswith((" ", "\t")) and cur is not None:
            item = line.strip()
            if item and not item.startswith("#"):
                cur.append(item)
        else:
            cur = None
    return groups


def expand(names, groups, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for n in names:
        if n.startswith("@"):
            if n in seen:
                continue
            seen.add(n)
            if n not in groups:
                raise SystemExit("unknown syscall group %s" % n)
            out |= expand(groups[n], groups, seen)
        else:
            out.add(n)
    return out


def allowed_syscalls(unit, groups):
    """The allow list that the unit's SystemCallFilter= lines leave."""
    allow = None
    for v in unit_values(unit, "SystemCallFilter"):
        deny = v.startswith("~")
        items = v.lstrip("~").split()
        s = expand(items, groups)
        if deny:
            if allow is None:
                raise SystemExit("a deny list first is not handled here")
            allow -= s
        else:
            allow = s if allow is None else allow | s
    return allow


LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z_][a-z0-9_]*)(?:\(| resumed>)")
SOCKET = re.compile(r"^\d+\s+socket\((AF_[A-Z0-9]+|\d+)")
MAP = re.compile(r"^\d+\s+(mmap|mprotect|pkey_mprotect)\((.*)")


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    unit, trace = argv[1], argv[2]
    groups = filter_groups()
    allow = allowed_syscalls(unit, groups)
    if allow is None:
        print("%s has no SystemCallFilter=" % unit)
        return 1
    families = set()
    for v in unit_values(unit, "RestrictAddressFamilies"):
        families = set(v.split())
    families |= {"AF_LOCAL"} if "AF_UNIX" in families else set()
    mdwe = any(v == "yes" for v in unit_values(unit, "MemoryDenyWriteExecute"))

    used, fams, wx = {}, {}, []
    started = False
    with open(trace, errors="replace") as f:
        for line in f:
            if not started:
                # strace's own set-up before the first execve is not the
                # service's: systemd applies the filter at that execve.
                if re.match(r"^\d+\s+execve\(", line):
                    started = True
                else:
                    continue
            m = LINE.match(line)
            if m:
                used[m.group(2)] = used.get(m.group(2), 0) + 1
            m = SOCKET.match(line)
            if m:
                fams[m.group(1)] = fams.get(m.group(1), 0) + 1
            m = MAP.match(line)
            if m and "PROT_EXEC" in m.group(2) and "PROT_WRITE" in m.group(2):
                wx.append(line.strip())
    if not started:
        print("%s: no execve: not an strace -f log of the service?" % trace)
        return 1

    bad = 0
    denied = sorted(s for s in used if s not in allow)
    print("syscalls: %d distinct, %d calls; socket families: %s" % (
        len(used), sum(used.values()), " ".join(sorted(fams)) or "none"))
    if denied:
        bad = 1
        print("NOT allowed by %s's SystemCallFilter=: %s" % (unit, " ".join(denied)))
        for s in denied:
            hits = [g for g in ("@privileged", "@resources") if s in expand([g], groups)]
            if hits:
                print("  %s is in %s" % (s, " ".join(hits)))
    for fam in sorted(fams):
        if families and fam not in families:
            if fam == "AF_NETLINK":
                # glibc's getaddrinfo(AI_ADDRCONFIG) probes interfaces over
                # netlink and falls back when the family is refused.
                print("note: socket(AF_NETLINK) will fail with EAFNOSUPPORT "
                      "(glibc falls back)")
            else:
                bad = 1
                print("socket family %s is not in RestrictAddressFamilies=" % fam)
    if mdwe and wx:
        bad = 1
        print("writable+executable mappings under MemoryDenyWriteExecute=yes:")
        for w in wx[:5]:
            print("  " + w)
    if not bad:
        print("the trace fits %s (SystemCallFilter=, RestrictAddressFamilies=%s)"
              % (unit.rsplit("/", 1)[-1],
                 ", MemoryDenyWriteExecute=" if mdwe else ""))
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv))
