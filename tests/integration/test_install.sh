#!/bin/bash
# make install into a temporary root (DESTDIR): the binary, the example
# configurations and the man page land where the prefix says, and
# "man hereproxy.fcgi" finds and renders the page from there (MANPATH),
# as "man -l" does from the file.
. "$(dirname "$0")/lib.sh"

require_cmds make man
require_bin

ROOT=$RUN_DIR/root
# A make of its own: not the jobserver of a "make check" that runs us.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    make -C "$abs_top_builddir" install DESTDIR="$ROOT" >"$RUN_DIR/install.log" 2>&1; then
    die "make install DESTDIR=$ROOT failed: $(tail -n 5 "$RUN_DIR/install.log")"
fi
ok "make install DESTDIR=$ROOT"

# Where the configured prefix put them (default /usr/local).
PREFIX=$(sed -n 's/^prefix = //p' "$abs_top_builddir/Makefile")
[ -n "$PREFIX" ] || die "no prefix in $abs_top_builddir/Makefile"
MANDIR=$(sed -n 's/^mandir = //p' "$abs_top_builddir/Makefile" | sed "s|\${datarootdir}|$PREFIX/share|; s|\${prefix}|$PREFIX|")
SBIN=$ROOT$PREFIX/sbin/hereproxy.fcgi
PAGE=$ROOT$MANDIR/man8/hereproxy.fcgi.8
assert_eq "$(test -x "$SBIN" && echo yes)" yes "the binary is installed in $PREFIX/sbin"
assert_match "$("$SBIN" --version 2>&1)" '^hereproxy\.fcgi [0-9]' "the installed binary runs (--version)"
assert_eq "$(test -s "$PAGE" && echo yes)" yes "the man page is installed in $MANDIR/man8"
assert_eq "$(find "$ROOT$PREFIX/share/doc" -name hereproxy.conf -path '*nginx*' | wc -l)" 1 \
    "the NGINX example is installed under share/doc"

# man finds the page by name in the installed tree, and renders it.
export MANWIDTH=80 MANPAGER=cat PAGER=cat
unset MANOPT
OUT=$(MANPATH=$ROOT$MANDIR man -w hereproxy.fcgi 2>&1)
assert_eq "$OUT" "$PAGE" "MANPATH=... man -w hereproxy.fcgi finds the installed page"
OUT=$(MANPATH=$ROOT$MANDIR man hereproxy.fcgi 2>"$RUN_DIR/man.err")
assert_eq "$?" 0 "MANPATH=... man hereproxy.fcgi exits 0"
assert_match "$(printf '%s\n' "$OUT" | sed -n '1,8p' | tr -s ' ')" 'NAME' "the page has its NAME section"
assert_match "$(printf '%s\n' "$OUT" | tr -s ' \n' ' ')" \
    'NAME hereproxy\.fcgi (-+|.) caching FastCGI proxy for HERE raster map tiles' \
    "NAME: hereproxy.fcgi -- caching FastCGI proxy for HERE raster map tiles"
for section in SYNOPSIS DESCRIPTION ENVIRONMENT METRICS EXAMPLES; do
    assert_match "$(printf '%s\n' "$OUT" | grep -c "^$section\$")" '^1$' "the page renders its $section section"
done
assert_contains "$OUT" HEREPROXY_IDLE_RELEASE_MS "the rendered page documents HEREPROXY_IDLE_RELEASE_MS"
assert_contains "$OUT" process_resident_memory_bytes "the rendered page documents the process metrics"
# (troff's "can't break line" about a long literal is a layout note.)
assert_eq "$(grep -vc 'can.t break line' "$RUN_DIR/man.err")" 0 "man printed no error"
# man -l renders the installed file the same way.
assert_eq "$(man -l "$PAGE" 2>/dev/null | md5sum)" "$(printf '%s\n' "$OUT" | md5sum)" \
    "man -l on the installed file renders the same page"

finish
