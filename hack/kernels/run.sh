#!/usr/bin/env bash
# Boots one of Debian's cloud kernels under qemu (TCG: no KVM needed) with an
# initramfs holding busybox, the host tools the tests use (with their shared
# libraries), the kernel modules they need, a small ext4 image, the static
# agent and a static guest test binary; runs the test binary there and
# reports its result from the serial console.
#
# Usage: hack/kernels/run.sh [options] KERNEL
#   KERNEL   6.1 | 6.12 (the newest such cloud kernel apt knows) or a
#            package name (linux-image-...-cloud-amd64[-unsigned])
#   -o DIR   work directory (default: /tmp/netsonde-kernels/KERNEL)
#   -a BIN   the agent (default: CGO_ENABLED=0 go build ./cmd/netsonde)
#   -t BIN   the guest test binary (default: CGO_ENABLED=0 go test -c ./test/kernels)
#   -r RE    -test.run pattern for the guest binary
#   -x ARG   one more argument for the guest binary (repeatable)
#   -T SEC   give up on the VM after SEC seconds (default 480)
#   -m       mount tracefs in the guest (by default it is not, as on most
#            nodes' containers: the agent finds its hooks without it)
#   -p       print the resolved package name and exit
#
# Prints the guest's output; exits 0 when the guest test passed, 1 when it
# failed, 2 when no result came back (boot failure, hang, crash).
# Kernel packages are downloaded once into $NETSONDE_KERNEL_CACHE
# (default /var/cache/netsonde/kernels) and unpacked there.
# Needs root to install missing Debian packages (hack/install-deps.sh) and
# to write the cache. The guest mounts proc, sysfs, devtmpfs, tmpfs on /tmp
# and /run, bpffs, cgroup2 and (with -m) tracefs, loads its modules and
# mounts the ext4 image on /mnt/ext4 before the tests start.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${NETSONDE_KERNEL_CACHE:-/var/cache/netsonde/kernels}
OUT= AGENT= GUEST= RUN= TIMEOUT=480 PRINT_PKG= NO_TRACEFS=1
GUEST_ARGS=()
while getopts "o:a:t:r:x:T:mp" opt; do
	case $opt in
	o) OUT=$OPTARG ;;
	a) AGENT=$OPTARG ;;
	t) GUEST=$OPTARG ;;
	r) RUN=$OPTARG ;;
	x) GUEST_ARGS+=("$OPTARG") ;;
	T) TIMEOUT=$OPTARG ;;
	m) NO_TRACEFS= ;;
	p) PRINT_PKG=1 ;;
	*) sed -n '8,20p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { sed -n '8,20p' "$0" >&2; exit 2; }
KERNEL=$1
log() { echo "kernels[$KERNEL]: $*" >&2; }

# --- which package -------------------------------------------------------
case $KERNEL in
6.1) pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64-unsigned$' ;;
linux-image-*) pattern="^$(printf '%s' "$KERNEL" | sed 's/[.+]/\\&/g')\$" ;;
*) echo "unknown kernel $KERNEL (6.1, 6.12 or a linux-image package)" >&2; exit 2 ;;
esac
newest() { apt-cache search --names-only "$pattern" 2>/dev/null | awk '{print $1}' | sort -V | tail -1 || true; }
PKG=$(newest)
if [ -z "$PKG" ] && [ "$(id -u)" -eq 0 ]; then
	apt-get update -qq >&2 || true # a fresh machine may have no package lists
	PKG=$(newest)
fi
if [ -z "$PKG" ]; then
	# apt's lists unavailable: the newest package already in the cache
	PKG=$(ls "$CACHE" 2>/dev/null | sed -n 's/_.*\.deb$//p' | grep -E "$pattern" | sort -V | tail -1 || true)
fi
[ -n "$PKG" ] || { echo "no package matches $pattern (apt-get update?)" >&2; exit 2; }
if [ -n "$PRINT_PKG" ]; then echo "$PKG"; exit 0; fi
KVER=${PKG#linux-image-}
KVER=${KVER%-unsigned}

# --- tools ---------------------------------------------------------------
for c in qemu-system-x86_64 depmod mkfs.ext4 xz zstd cpio ldd; do
	command -v "$c" >/dev/null || { "$ROOT/hack/install-deps.sh" >&2; break; }
done
[ -x /bin/busybox ] || "$ROOT/hack/install-deps.sh" >&2
if ldd /bin/busybox >/dev/null 2>&1; then
	echo "/bin/busybox is dynamically linked; install busybox-static (hack/install-deps.sh)" >&2
	exit 2
fi

# --- the kernel package: downloaded and unpacked once, under a lock ------
mkdir -p "$CACHE"
K="$CACHE/$KVER"
(
	flock 9
	if [ ! -f "$K/.done" ]; then
		deb=$(ls "$CACHE/${PKG}"_*.deb 2>/dev/null | head -1 || true)
		if [ -z "$deb" ]; then
			log "downloading $PKG"
			(cd "$CACHE" && apt-get download -q "$PKG" >&2 2>/dev/null) ||
				(cd "$CACHE" && apt-get download -q "$PKG" >&2)
			deb=$(ls "$CACHE/${PKG}"_*.deb | head -1)
		fi
		rm -rf "$K.tmp"
		dpkg-deb -x "$deb" "$K.tmp"
		# Debian ships no modules.dep (its postinst makes it)
		depmod -b "$K.tmp" "$KVER"
		rm -rf "$K"
		mv "$K.tmp" "$K"
		touch "$K/.done"
	fi
) 9>"$CACHE/.$KVER.lock"
MODDIR="$K/lib/modules/$KVER"
VMLINUZ="$K/boot/vmlinuz-$KVER"

OUT=${OUT:-/tmp/netsonde-kernels/$KERNEL}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- binaries -------------------------------------------------------------
if [ -z "$AGENT" ]; then
	AGENT="$OUT/netsonde"
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$AGENT" ./cmd/netsonde)
fi
if [ -z "$GUEST" ]; then
	GUEST="$OUT/kernels.test"
	(cd "$ROOT" && CGO_ENABLED=0 go test -c -o "$GUEST" ./test/kernels)
fi
for b in "$AGENT" "$GUEST"; do
	if ldd "$b" >/dev/null 2>&1; then echo "$b is not statically linked (CGO_ENABLED=0)" >&2; exit 2; fi
done

# --- initramfs ------------------------------------------------------------
R="$OUT/root"
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,mnt/ext4,etc,lib/modules}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
done
cp "$AGENT" "$R/bin/netsonde"
cp "$GUEST" "$R/bin/guest.test"

# Host tools and every shared library they load (ldd: direct and indirect).
# They go in /usr/sbin and /usr/bin, ahead of busybox's applets in PATH.
copy_lib() {
	local f=$1
	[ -e "$R$f" ] && return
	mkdir -p "$R$(dirname "$f")"
	cp -L "$f" "$R$f"
}
for tool in ip tc nft ping conntrack nsenter tracepath; do
	p=$(command -v "$tool") || { echo "$tool missing on the host (hack/install-deps.sh)" >&2; exit 2; }
	case $p in */sbin/*) dst=/usr/sbin ;; *) dst=/usr/bin ;; esac
	cp -L "$p" "$R$dst/$tool"
	for lib in $(ldd "$p" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
		copy_lib "$lib"
	done
done
for d in /etc/iproute2 /usr/share/iproute2 /etc/nftables; do
	[ -d "$d" ] && mkdir -p "$R$(dirname "$d")" && cp -r "$d" "$R$d"
done
cp /etc/protocols /etc/services "$R/etc/" 2>/dev/null || true
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo 'root:x:0:' >"$R/etc/group"
echo '127.0.0.1 localhost' >"$R/etc/hosts"

# Modules the tests need, with their dependencies from modules.dep, in load
# order (dependencies first). A module built into this kernel is skipped.
WANT="veth dummy vxlan wireguard loop nf_conntrack nf_conntrack_netlink nfnetlink nf_tables nft_ct nft_reject nft_reject_inet
      sch_ingress cls_bpf sch_netem sch_tbf ext4 crc32c_generic crc32c_intel"
declare -A seen=()
ORDER=()
dep_of() { # the modules.dep line of module $1 (by name), "" if none
	awk -v m="$1" -F: '{ n=$1; sub(/.*\//, "", n); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", n); gsub(/-/, "_", n); if (n == m) { print; exit } }' "$MODDIR/modules.dep"
}
add_mod() {
	local m=${1//-/_} line path deps d
	[ -n "${seen[$m]:-}" ] && return
	seen[$m]=1
	line=$(dep_of "$m")
	if [ -z "$line" ]; then
		if grep -qE "/${m//_/[_-]}\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then return; fi
		log "module $m: not in this kernel (skipped)"
		return
	fi
	path=${line%%:*}
	deps=${line#*:}
	for d in $deps; do
		d=${d##*/}
		d=${d%%.ko*}
		add_mod "$d"
	done
	ORDER+=("$m")
	case $path in
	*.xz) xz -dc "$MODDIR/$path" >"$R/lib/modules/$m.ko" ;;
	*.zst) zstd -qdc "$MODDIR/$path" >"$R/lib/modules/$m.ko" ;;
	*.gz) gzip -dc "$MODDIR/$path" >"$R/lib/modules/$m.ko" ;;
	*) cp "$MODDIR/$path" "$R/lib/modules/$m.ko" ;;
	esac
}
for m in $WANT; do add_mod "$m"; done
echo "${ORDER[*]}" >"$R/etc/modules"

# A small ext4 filesystem with a journal, for ext4's sync hooks.
truncate -s 32M "$R/ext4.img"
mkfs.ext4 -q -F "$R/ext4.img"

{
	for a in "${GUEST_ARGS[@]}"; do printf '%s\n' "$a"; done
	[ -n "$RUN" ] && printf '%s\n' "-test.run=$RUN"
} >"$R/etc/guest-args"
[ -n "$NO_TRACEFS" ] && touch "$R/etc/no-tracefs"

cat >"$R/init" <<'INIT'
#!/bin/busybox sh
# netsonde kernel matrix guest: set up, run /bin/guest.test, report, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t bpf bpf /sys/fs/bpf
[ -e /etc/no-tracefs ] || mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
for m in $(cat /etc/modules); do
	insmod /lib/modules/$m.ko 2>/tmp/insmod.err || echo "NETSONDE-GUEST: insmod $m failed: $(cat /tmp/insmod.err)"
done
ip link set lo up
if losetup /dev/loop0 /ext4.img && mount -t ext4 /dev/loop0 /mnt/ext4; then
	export NETSONDE_EXT4_DIR=/mnt/ext4
else
	echo "NETSONDE-GUEST: ext4 image not mounted"
fi
echo "NETSONDE-GUEST: modules loaded: $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
echo "NETSONDE-GUEST-BEGIN $(uname -r) $(nproc) cpus $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
set --
while IFS= read -r a; do set -- "$@" "$a"; done </etc/guest-args
start=$(cut -d' ' -f1 /proc/uptime)
NETSONDE_GUEST=1 CI=true NETSONDE_AGENT_BIN=/bin/netsonde /bin/guest.test -test.v -test.timeout=400s "$@" 2>&1
rc=$?
end=$(cut -d' ' -f1 /proc/uptime)
if [ $rc -eq 0 ]; then result=PASS; else result=FAIL; fi
echo "NETSONDE-GUEST-RESULT: $result rc=$rc kernel=$(uname -r) test_seconds=$(awk -v a=$start -v b=$end 'BEGIN {print b-a}')"
sync
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$OUT/initramfs.cpio.gz")
rm -rf "$R"

# --- boot -----------------------------------------------------------------
log "booting $KVER ($(du -h "$OUT/initramfs.cpio.gz" | cut -f1) initramfs)"
SERIAL="$OUT/serial.log"
t0=$(date +%s)
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2G \
	-no-reboot -nographic -nodefaults -serial stdio -net none \
	-kernel "$VMLINUZ" -initrd "$OUT/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 oops=panic loglevel=3 rdinit=/init" \
	</dev/null >"$SERIAL" 2>&1
qrc=$?
set -e
log "qemu exited $qrc after $(($(date +%s) - t0))s"
# The guest's set-up messages, then everything from its test run on (the
# console's first line carries the firmware's escape sequences).
tr -d '\r' <"$SERIAL" | sed -n 's/^.*\(NETSONDE-GUEST[-:]\)/\1/; /^NETSONDE-GUEST-BEGIN/,$p; /^NETSONDE-GUEST:/p'
result=$(tr -d '\r' <"$SERIAL" | sed -n 's/^NETSONDE-GUEST-RESULT: \([A-Z]*\).*/\1/p' | tail -1)
case $result in
PASS) exit 0 ;;
FAIL) exit 1 ;;
*)
	echo "NETSONDE-GUEST-RESULT: NONE (qemu status $qrc; last of the console:)"
	tr -d '\r' <"$SERIAL" | tail -40
	exit 2
	;;
esac
