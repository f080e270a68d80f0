#!/bin/bash
# Installs the Debian packages the build and the tests need, when missing.
# Says what it installs; needs root (or sudo) only when something is missing.
# MSV_WANT_CHROMIUM=1 (make test) also wants chromium for the HTML-report
# test, and the aarch64 cross compiler and qemu-user for the aarch64 test
# (tests/e2e/cross_aarch64.sh, about 250 MB); those are best effort: without
# them the tests report a skip.
set -eu
need=()
have_hdr() { [ -e "/usr/include/$1" ] || [ -e "/usr/include/x86_64-linux-gnu/$1" ]; }
have_hdr check.h || need+=(check)
have_hdr jansson.h || need+=(libjansson-dev)
have_hdr uthash.h || need+=(uthash-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -e /usr/lib/x86_64-linux-gnu/libsubunit.so ] || [ -e /usr/lib/x86_64-linux-gnu/libsubunit.a ] || need+=(libsubunit-dev)
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc)
# `memsaver attach` (BPF): clang compiles tracer/bpf/*.bpf.c, bpftool makes the
# skeleton, and libbpf, libelf and zlib are linked statically (libbpf.a etc.).
command -v clang >/dev/null || need+=(clang)
command -v bpftool >/dev/null || [ -x /usr/sbin/bpftool ] || need+=(bpftool)
[ -e /usr/lib/x86_64-linux-gnu/libbpf.a ] || need+=(libbpf-dev)
[ -e /usr/lib/x86_64-linux-gnu/libelf.a ] || need+=(libelf-dev)
[ -e /usr/lib/x86_64-linux-gnu/libz.a ] || need+=(zlib1g-dev)
optional=()
if [ "${MSV_WANT_CHROMIUM:-0}" = 1 ]; then
	command -v chromium >/dev/null || optional+=(chromium)
	command -v aarch64-linux-gnu-gcc >/dev/null || optional+=(gcc-aarch64-linux-gnu)
	[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || optional+=(libc6-dev-arm64-cross)
	command -v qemu-aarch64 >/dev/null || optional+=(qemu-user)
fi
[ ${#need[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || [ ${#need[@]} -eq 0 ]
if [ ${#need[@]} -gt 0 ]; then
	echo "memsaver: installing missing Debian packages: ${need[*]}"
	$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ ${#optional[@]} -gt 0 ]; then
	echo "memsaver: installing ${optional[*]} for the HTML-report and aarch64 tests"
	$SUDO apt-get install -y -qq --no-install-recommends "${optional[@]}" ||
		echo "memsaver: could not install ${optional[*]}; the tests that need them will be skipped"
fi
