#!/usr/bin/env bash
# Installs the Debian packages netsonde's build, tests and benchmarks use,
# and skips what is already there. Safe to run again; needs root (CI is).
set -euo pipefail

# command -> Debian package that provides it
declare -A need=(
	[clang-19]=clang-19
	[llvm-strip-19]=llvm-19
	[bpftool]=bpftool
	[promtool]=prometheus
	[prometheus]=prometheus
	[prometheus-alertmanager]=prometheus-alertmanager
	[prometheus-node-exporter]=prometheus-node-exporter
	[etcd]=etcd-server
	[etcdctl]=etcd-client
	[fio]=fio
	[iperf3]=iperf3
	[nft]=nftables
	[iptables]=iptables
	[conntrack]=conntrack
	[ping]=iputils-ping
	# the mesh tests' namespace-local sysctls (icmp_echo_ignore_all, ping_group_range)
	[sysctl]=procps
	[tracepath]=iputils-tracepath
	[hyperfine]=hyperfine
	[ethtool]=ethtool
	[ip]=iproute2
	[openssl]=openssl
	# benchmarks (hack/bench/ready.sh)
	[curl]=curl
	[bc]=bc
	# the fsync probe's tests put an ext4 image at the etcd path
	[mkfs.ext4]=e2fsprogs
	[losetup]=mount
	# the kernel matrix (hack/kernels): qemu without KVM, kernel packages
	# unpacked and their modules resolved, initramfs tools
	[qemu-system-x86_64]=qemu-system-x86
	[depmod]=kmod
	[xz]=xz-utils
	[zstd]=zstd
	[cpio]=cpio
	[ldd]=libc-bin
	# make soak plots its figures
	[gnuplot]=gnuplot-nox
	# the dns collector's tests: a real resolver and a real client
	[dnsmasq]=dnsmasq-base
	[dig]=dnsutils
	# netsonde capture's test: the pcap it writes must be read by tcpdump -r
	[tcpdump]=tcpdump
)
# headers only: checked by file
declare -A need_files=(
	[/usr/include/bpf/bpf_helpers.h]=libbpf-dev
	# statically linked: it is the guest's /bin in the kernel matrix
	[/bin/busybox]=busybox-static
)

missing=()
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
for f in "${!need_files[@]}"; do
	[ -e "$f" ] || missing+=("${need_files[$f]}")
done
# Debian's dynamic busybox has the same path; the guest needs the static one
if [ -e /bin/busybox ] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
	missing+=(busybox-static)
fi
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: everything present"
	exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: need root to apt-get install ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the services it installs; tests run their own instances on
# their own ports, so the system ones are stopped to keep ports and CPU free.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter etcd; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		systemctl stop "$svc" || true
	fi
done
echo "install-deps: done"
