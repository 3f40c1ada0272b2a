#!/usr/bin/env python3
"""Read contrib/docker/Dockerfile for the scripts beside it (no Docker needed).

    dockerfile.py steps DOCKERFILE STAGE      instructions of a stage, one JSON object a line
    dockerfile.py packages DOCKERFILE STAGE   packages its apt-get install lines install
    dockerfile.py runtime DOCKERFILE          JSON: the last stage's CMD, ENV, USER, EXPOSE,
                                              HEALTHCHECK and STOPSIGNAL
    dockerfile.py copy CONTEXT IGNOREFILE DEST
                                              copy the build context as Docker would,
                                              leaving out what IGNOREFILE names

STAGE is a name from "FROM ... AS NAME" or a 0-based index.  Only what the
Dockerfile here uses is understood: FROM, ARG, ENV, WORKDIR, COPY, RUN (shell
form), USER, EXPOSE, HEALTHCHECK, STOPSIGNAL, CMD (exec form), backslash
continuations and comments.
"""

import json
import os
import re
import shlex
import shutil
import sys


def instructions(path):
    """[(keyword, argument text)] with continuations joined."""
    out, buf = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if buf and line.lstrip().startswith("#"):
                continue  # comment lines inside a continued instruction
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            kw, _, rest = buf.strip().partition(" ")
            out.append((kw.upper(), rest.strip()))
            buf = ""
    if buf:
        raise SystemExit("%s: unterminated continuation" % path)
    return out


def stages(path):
    st = []
    for kw, arg in instructions(path):
        if kw == "FROM":
            words = arg.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            st.append({"from": words[0], "name": name, "ins": []})
        elif not st:
            if kw != "ARG":
                raise SystemExit("%s: %s before FROM" % (path, kw))
        else:
            st[-1]["ins"].append((kw, arg))
    return st


def stage(path, which):
    st = stages(path)
    for i, s in enumerate(st):
        if s["name"] == which or str(i) == which:
            return s
    if which == "last":
        return st[-1]
    raise SystemExit("%s: no stage %s" % (path, which))


def apt_packages(run):
    """Package names of every `apt-get install` in a RUN's shell text."""
    pkgs = []
    for cmd in re.split(r"&&|;|\|\|", run):
        words = shlex.split(cmd)
        if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
            i = words.index("install")
            pkgs += [w for w in words[i + 1:] if not w.startswith("-")]
    return pkgs


def runtime(path):
    s = stage(path, "last")
    info = {"from": s["from"], "env": {}, "user": None, "expose": [],
            "healthcheck": None, "stopsignal": None, "cmd": None}
    for kw, arg in s["ins"]:
        if kw == "ENV":
            for kv in shlex.split(arg):
                k, _, v = kv.partition("=")
                info["env"][k] = v
        elif kw == "USER":
            info["user"] = arg
        elif kw == "EXPOSE":
            info["expose"] += arg.split()
        elif kw == "STOPSIGNAL":
            info["stopsignal"] = arg
        elif kw == "CMD":
            info["cmd"] = json.loads(arg)
        elif kw == "HEALTHCHECK":
            opts, rest = [], arg
            while rest.startswith("--"):
                opt, _, rest = rest.partition(" ")
                opts.append(opt)
                rest = rest.lstrip()
            if not rest.startswith("CMD "):
                raise SystemExit("HEALTHCHECK without CMD")
            info["healthcheck"] = {"options": opts, "shell": rest[4:].strip()}
    return info


def ignore_patterns(path):
    pats = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                pat = os.path.normpath(line.lstrip("!").strip("/"))
                rx = ""
                i = 0
                while i < len(pat):
                    if pat.startswith("**/", i):
                        rx += "(?:.*/)?"
                        i += 3
                    elif pat.startswith("**", i):
                        rx += ".*"
                        i += 2
                    elif pat[i] == "*":
                        rx += "[^/]*"
                        i += 1
                    elif pat[i] == "?":
                        rx += "[^/]"
                        i += 1
                    else:
                        rx += re.escape(pat[i])
                        i += 1
                pats.append((neg, re.compile(rx + r"\Z")))
    return pats


def ignored(rel, pats):
    """Docker's rule: the last matching pattern decides; a match on a
    parent directory counts for everything below it."""
    parts = rel.split("/")
    result = False
    for neg, rx in pats:
        for n in range(1, len(parts) + 1):
            if rx.match("/".join(parts[:n])):
                result = not neg
                break
    return result


def copy_context(ctx, ignorefile, dest):
    pats = ignore_patterns(ignorefile)
    n = 0
    for root, dirs, files in os.walk(ctx):
        relroot = os.path.relpath(root, ctx)
        relroot = "" if relroot == "." else relroot + "/"
        dirs[:] = [d for d in dirs if not ignored(relroot + d, pats)]
        os.makedirs(os.path.join(dest, relroot), exist_ok=True)
        for f in files:
            if ignored(relroot + f, pats):
                continue
            src = os.path.join(root, f)
            if os.path.islink(src) and not os.path.exists(src):
                continue
            shutil.copy2(src, os.path.join(dest, relroot, f))
            n += 1
    print("copied %d files" % n)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "steps" and len(argv) == 4:
        for kw, arg in stage(argv[2], argv[3])["ins"]:
            print(json.dumps({"kw": kw, "arg": arg}))
    elif cmd == "packages" and len(argv) == 4:
        pkgs = []
        for kw, arg in stage(argv[2], argv[3])["ins"]:
            if kw == "RUN":
                pkgs += apt_packages(arg)
        print("\n".join(pkgs))
    elif cmd == "runtime" and len(argv) == 3:
        print(json.dumps(runtime(argv[2])))
    elif cmd == "copy" and len(argv) == 5:
        copy_context(argv[2], argv[3], argv[4])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
