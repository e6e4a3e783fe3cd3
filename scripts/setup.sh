#!/usr/bin/env bash
# Set-up shared by `npm start` (--daemon) and `npm test` (--test): install the
# Debian packages that are missing, then the npm dependencies and the build
# (scripts/build.sh). Each step is skipped when already done, so running it
# again is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:---daemon}
# ovmf: UEFI firmware for `firmware: "uefi"` VMs; xorriso makes cloud-init seed ISOs;
# nftables holds the bridged NICs' anti-spoofing rules.
packages=(qemu-system-x86 qemu-utils ovmf xorriso nftables)
if [ "$mode" = "--test" ]; then
  # cpio builds the test guest's initramfs; iproute2 makes test network namespaces.
  # grub's two platforms, xorriso and mtools make the installer ISO; systemd brings systemd-analyze.
  # etcd-server: the fleet tests start their own etcd on loopback (never the packaged service).
  # openssl: the TLS tests make throw-away CAs and host certificates.
  # chromium: the console page tests drive it headless (puppeteer-core).
  # gcc and libc6-dev compile the guest's raw frame sender; tcpdump watches taps in the network isolation tests and
  # captures what crosses the migration TLS test's link.
  # libnbd-bin: nbdinfo reads the disk exports and their dirty bitmaps (test/backups/disk-export.test.ts).
  packages+=(cpio iproute2 systemd grub-pc-bin grub-efi-amd64-bin mtools etcd-server openssl chromium gcc libc6-dev tcpdump libnbd-bin)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The user qemu runs as (--qemu-user's default), as Debian makes libvirt-qemu: a
# system user without a home or a shell, in group kvm so /dev/kvm opens. Each VM
# runs as a uid of its own from the range delegated to it in /etc/subuid.
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
qemu_user=vmhostd-qemu
getent group kvm >/dev/null || $sudo groupadd --system kvm
if ! getent passwd "$qemu_user" >/dev/null; then
  echo "setup: creating the system user $qemu_user" >&2
  $sudo useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --gid kvm "$qemu_user"
fi
if ! grep -q "^$qemu_user:" /etc/subuid 2>/dev/null; then
  # 65536 uids above every range already delegated, so none is shared.
  start=$( (cat /etc/subuid /etc/subgid 2>/dev/null || true) | awk -F: 'BEGIN { m = 1000000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }')
  echo "setup: delegating uids $start-$((start + 65535)) to $qemu_user" >&2
  $sudo usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$qemu_user"
fi
# A stock host has /dev/net/tun 0666 (an unprivileged qemu opens it to attach its
# tap, which the daemon made for that uid); some containers make it 0600.
if [ "$mode" = "--test" ] && [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" = 600 ]; then
  $sudo chmod 0666 /dev/net/tun
fi

bash scripts/build.sh
