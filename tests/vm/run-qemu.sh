#!/bin/sh
# Boot the rig's guest under QEMU (TCG) with the fixed device topology; serial output goes to
# stdout.  The guest powers itself off; a guest panic reboots, which -no-reboot turns into an exit
# (QEMU exits 0 either way, so judge the run by the serial log's `=== RIG DONE` line).
#
#   run-qemu.sh BZIMAGE INITRD [normal|1g]
#     normal: -m 2G                                  (everything except 1G hugetlb variants)
#     1g:     -m 4G + hugepagesz=1G hugepages=1      (1G hugetlb variants)
# PRINT_ARGS=1: print QEMU's arguments one per line (BZIMAGE and INITRD are printed as given)
# and exit without booting; `passthru lava job` builds the LAVA device file and job from this
# output, so this script stays the one source of the rig's QEMU command line.
# Environment: TIMEOUT (wall-clock seconds, default 900; exit 124 when hit, 137 if QEMU
# ignored SIGTERM), ACCEL (default: kvm with CPU=host when /dev/kvm is usable and the host CPU
# has real VMX/SVM, else tcg with CPU=max; a paravirtual KVM such as PVM, which has neither flag
# and cannot boot a normal kernel at a usable speed, gets tcg), CPU, APPEND (extra kernel
# parameters), QEMU (binary).
#
# Topology (BDFs as the guest sees them; tests/src/rig/plan.rs must agree):
#   0000:00:03.0  edu (1234:11e8), root bus, no reset
#   0000:01:00.0  edu behind pcie-root-port rp1 (bus reset)
#   0000:02:00.0  igb (8086:10c9) behind pcie-root-port rp2 (MSI-X, FLR, SR-IOV; VFs 8086:10ca)
#   0000:00:06.0  e1000e (8086:10d3), root bus (MSI-X, PM reset)
set -eu
[ $# -ge 2 ] || { echo "usage: $0 BZIMAGE INITRD [normal|1g]" >&2; exit 2; }
kernel=$1 initrd=$2 variant=${3:-normal}
case "$variant" in
normal) mem=2G; vappend= ;;
1g)     mem=4G; vappend="hugepagesz=1G hugepages=1" ;;
*) echo "run-qemu.sh: unknown variant '$variant'" >&2; exit 2 ;;
esac
if [ -z "${ACCEL:-}" ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] \
        && grep -qwE 'vmx|svm' /proc/cpuinfo 2>/dev/null; then
    accel=kvm; cpu=${CPU:-host}
else
    accel=${ACCEL:-tcg}; cpu=${CPU:-max}
fi
echo "run-qemu.sh: -accel $accel -cpu $cpu" >&2
# edu's default DMA mask is 28 bits: wider IOVAs would be silently truncated.
edu="edu,dma_mask=0xffffffffffffffff"

set -- -accel "$accel" -cpu "$cpu" -smp 1 -m "$mem" \
    -M q35,kernel-irqchip=split \
    -device intel-iommu,intremap=on,caching-mode=on \
    -device "$edu,addr=03.0" \
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=04.0 \
    -device "$edu,bus=rp1" \
    -device pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=05.0 \
    -device igb,bus=rp2 \
    -device e1000e,addr=06.0 \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 intel_iommu=on panic=-1 oops=panic vfio_pci.enable_sriov=1 $vappend ${APPEND:-}" \
    -nodefaults -display none -serial stdio -monitor none -no-reboot
if [ "${PRINT_ARGS:-0}" = 1 ]; then
    printf '%s\n' "$@"
    exit 0
fi
# SIGTERM first (QEMU exits cleanly), SIGKILL 10 s later; exit status 124 on timeout.
exec timeout -k 10 "${TIMEOUT:-900}" "${QEMU:-qemu-system-x86_64}" "$@"
