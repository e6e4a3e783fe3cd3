#!/usr/bin/env bash
# Set-up shared by `npm start` (--daemon) and `npm test` (--test): install the
# Debian packages that are missing, the npm dependencies, and build. Each step
# is skipped when already done, so running it again is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:---daemon}
# ovmf: UEFI firmware for `firmware: "uefi"` VMs; xorriso makes cloud-init seed ISOs.
packages=(qemu-system-x86 qemu-utils ovmf xorriso)
if [ "$mode" = "--test" ]; then
  # cpio builds the test guest's initramfs; iproute2 makes test network namespaces.
  # grub's two platforms, xorriso and mtools make the installer ISO; systemd brings systemd-analyze.
  # etcd-server: the fleet tests start their own etcd on loopback (never the packaged service).
  packages+=(cpio iproute2 systemd grub-pc-bin grub-efi-amd64-bin mtools etcd-server)
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

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ ! -f dist/src/main.js ] || [ -n "$(find src test bench tsconfig.json -newer dist/src/main.js -name '*.ts' -o -newer dist/src/main.js -name tsconfig.json 2>/dev/null | head -1)" ]; then
  echo "setup: building" >&2
  npx tsc -p tsconfig.json
fi
