#!/usr/bin/env bash
# Run HERE (a machine with the build dependencies installed by scripts/install-deps.sh and
# apt access) before a GPU check: collects into .gpu-deps/ (git-ignored) what a bare GPU
# machine without network lacks to build and run spectrain, for `carry`:
#   .gpu-deps/debs/*.deb   the Debian packages of the build dependencies (MPI, ScaLAPACK,
#                          parallel HDF5, OpenBLAS + LAPACKE, libyaml, jansson, pkg-config)
#                          and their library dependencies, without the toolchain and base
#                          system (compilers, libc, perl, python, cmake: the GPU image has them)
#   .gpu-deps/links.txt    "LINK TARGET" symlinks that Debian's update-alternatives makes at
#                          install time (mpicc, libblas.so.3, h5pcc, hdf5.pc ...): dpkg -x
#                          does not run maintainer scripts, so gpu-check.sh makes them
#   .gpu-deps/kjv.txt      the tiny job's text (scripts/prepare-tiny-data.sh), when available
# Packages come from /var/cache/apt/archives when cached there, else `apt-get download`.
# Prints the total size (the device tool carries at most 64 MiB with the working tree).
#   scripts/gpu-bundle-deps.sh            then: run(carry: [".gpu-deps"], "scripts/gpu-check.sh")
set -euo pipefail
cd "$(dirname "$0")/.."
D=.gpu-deps
rm -rf "$D"
mkdir -p "$D/debs"
roots=(pkg-config libopenmpi-dev openmpi-bin libscalapack-openmpi-dev libhdf5-openmpi-dev
       libyaml-dev libopenblas-dev libopenblas0-openmp liblapacke-dev libjansson-dev)
# Never shipped: the toolchain and the base system (present on the GPU image; shipping
# Debian's copies could only shadow newer ones, and gpu-check.sh never overwrites files).
skip='^(gcc|g\+\+|cpp|binutils|libc6|libc-|libc-dev-bin|perl|libperl|python|libpython|libllvm|flang|libflang|clang|libclang|gfortran|cmake|dpkg|linux-libc-dev|lib[atlu]*san|libubsan|libhwasan|libstdc\+\+|libgcc|libicu|libssl|libcrypt|zlib1g|libzstd|liblzma|libbz2|libmpfr|libgmp|libmpc|libisl|libctf|libbinutils|libgprofng|tar|debconf|base-|libselinux|libpcre|libz3|libmlir|libquadmath|libgomp1|libitm|libatomic|libcc1|libexpat|libncurses|libtinfo|libcurl|libnghttp|libssh|librtmp|libkrb|libgssapi|libk5|libldap|libsasl|libidn|libunistring|libpsl|libbrotli|libffi|libxml2|libarchive|libuv|librhash|libjsoncpp|libreadline|readline|libsqlite|libdb5|libgdbm|netbase|media-types|libnettle|libhogweed|libgnutls|libtasn1|libp11|sensible-utils|libmd0|libbsd|libsystemd|libudev|libcap|libaudit|libseccomp|libdebconf|install-info|gpgv|coreutils|bash|sed|grep|util-linux|mount|libmount|libblkid|libuuid|libsmartcols|login|passwd|libpam|libacl|libattr|libsemanage|libsepol|libkeyutils|libcom-err|libelf|libdw|libsframe|libjs-|openssh|procps|libnss3|libx11|libxau|libxdmcp|libxcb|autoconf|automake|m4|adduser|libslang|libgcrypt|libgpg-error|libjpeg|libprocps|libedit|libwrap|libnspr|libfido|libcbor)'
pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances --no-pre-depends "${roots[@]}" 2>/dev/null |
       grep -v '^ ' | grep -v '^<' | sort -u)
n=0
: > "$D/packages.txt"
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}|${Version}|${Architecture}' "$p" 2>/dev/null || true)
  [[ $st == "install ok installed|"* ]] || continue # alternatives not chosen here
  [[ $p =~ $skip ]] && continue
  IFS='|' read -r _ ver arch <<< "$st"
  f=/var/cache/apt/archives/${p}_${ver//:/%3a}_${arch}.deb
  if [[ -f $f ]]; then cp "$f" "$D/debs/"
  else (cd "$D/debs" && apt-get download -qq "$p=$ver") || { echo "gpu-bundle-deps: cannot get $p=$ver" >&2; exit 1; }
  fi
  echo "$p $ver" >> "$D/packages.txt"
  n=$((n + 1))
done
# alternatives' symlinks whose final target one of these packages ships
files=$(mktemp)
trap 'rm -f "$files"' EXIT
for p in $(awk '{print $1}' "$D/packages.txt"); do dpkg -L "$p" 2>/dev/null; done | sort -u > "$files"
: > "$D/links.txt"
for dir in /usr/bin /usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/pkgconfig /usr/include /usr/include/x86_64-linux-gnu; do
  for l in "$dir"/*; do
    [[ -L $l ]] || continue
    [[ $(readlink "$l") == /etc/alternatives/* ]] || continue
    t=$(readlink -f "$l")
    grep -qxF "$t" "$files" && echo "$l $t" >> "$D/links.txt"
  done
done
if [[ -s out/tiny/data/kjv.txt ]]; then cp out/tiny/data/kjv.txt "$D/"
elif scripts/prepare-tiny-data.sh "$D/tiny" >/dev/null 2>&1; then mv "$D/tiny/kjv.txt" "$D/"; rm -rf "$D/tiny"
fi
echo "gpu-bundle-deps: $n packages, $(wc -l < "$D/links.txt") alternative links, $(du -sh "$D" | cut -f1) in $D"
echo "  carry it: run(command: \"scripts/gpu-check.sh\", carry: [\"$D\"], timeout_s: 600)"
