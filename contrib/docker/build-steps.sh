#!/bin/bash
# contrib/docker/build-steps.sh [--destdir DIR] [--trace PREFIX] [--keep]
#
# Run the build stage of contrib/docker/Dockerfile on this Debian 12 machine,
# as root, without a container engine: the stage's instructions are read from
# the Dockerfile itself (dockerfile.py), so what runs here is what `docker
# build` runs.
#
#   ARG      exported; DESTDIR is given as a build argument would be
#            (default: a temporary directory, or --destdir DIR)
#   WORKDIR  the same path under a temporary root
#   COPY . . the repository, minus what Dockerfile.dockerignore leaves out
#   RUN      sh -c "..." in the work directory (apt-get installs here, as root)
#
# --trace PREFIX: run the RUN steps other than apt-get's under
# `strace -f -e trace=execve,open,openat -o PREFIX.N` (for contrib/docker/check).
# Prints "DESTDIR=<dir>" last; the temporary root is removed unless --keep.
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$DIR/../.." && pwd)
DOCKERFILE=$DIR/Dockerfile
PY=${PYTHON:-python3}

say() { printf 'build-steps: %s\n' "$*"; }
die() {
    printf 'build-steps: FAIL: %s\n' "$*" >&2
    exit 1
}

DESTDIR_ARG= TRACE= KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    --destdir) DESTDIR_ARG=$2; shift 2 ;;
    --trace) TRACE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "run as root: the build stage installs its packages with apt-get"
command -v apt-get >/dev/null || die "not a Debian machine"
[ -z "$TRACE" ] || command -v strace >/dev/null || die "--trace needs strace"

ROOT=$(mktemp -d /tmp/hereproxy-docker-build.XXXXXX)
chmod 755 "$ROOT"
[ "$KEEP" = 1 ] || trap 'rm -rf "$ROOT"' EXIT
DEST=${DESTDIR_ARG:-$ROOT/out}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)

cd "$ROOT"
n=0 work=/
while IFS= read -r line; do
    kw=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["kw"])' "$line")
    arg=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["arg"])' "$line")
    n=$((n + 1))
    case $kw in
    ARG | ENV)
        # NAME=value (one per instruction here); a build argument wins
        name=${arg%%=*} value=${arg#*=}
        [ "$name" = "$arg" ] && value=
        [ "$kw" = ARG ] && [ "$name" = DESTDIR ] && value=$DEST
        export "$name=$value"
        say "$kw $name=$value"
        ;;
    WORKDIR)
        work=$arg
        mkdir -p "$ROOT$work"
        cd "$ROOT$work"
        say "WORKDIR $work -> $ROOT$work"
        ;;
    COPY)
        [ "$arg" = ". ." ] || die "COPY $arg: only 'COPY . .' is emulated"
        say "COPY . . ($("$PY" "$DIR/dockerfile.py" copy "$REPO" "$DIR/Dockerfile.dockerignore" "$PWD"))"
        ;;
    RUN)
        say "RUN $arg"
        case $arg in
        apt-get*) sh -c "$arg" ;;
        *)
            if [ -n "$TRACE" ]; then
                strace -f -qq -e trace=execve,open,openat -o "$TRACE.$n" -- sh -c "$arg"
            else
                sh -c "$arg"
            fi
            ;;
        esac || die "step $n failed: RUN $arg"
        ;;
    *) die "$kw: not emulated (extend build-steps.sh)" ;;
    esac
done < <("$PY" "$DIR/dockerfile.py" steps "$DOCKERFILE" build)
[ "$n" -gt 0 ] || die "no build stage in $DOCKERFILE"
[ -x "$DEST/usr/local/sbin/hereproxy.fcgi" ] || die "no $DEST/usr/local/sbin/hereproxy.fcgi after the build"
say "the build stage's $n steps passed"
echo "DESTDIR=$DEST"
