#!/usr/bin/env bash
# One-time set-up on a fresh machine: npm packages (Bun comes from npm), and — when no Vulkan driver can give Dawn
# an adapter — a software adapter: Mesa 25's lavapipe from bookworm-backports, unpacked into .vulkan/ (git-ignored).
# Debian 12's own lavapipe (Mesa 22.3) lacks features Dawn requires, hence the backport.
# Idempotent: a second run does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund
fi

need_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "setup: needs root for: $*" >&2; return 1; fi; }

ICD=.vulkan/lvp_icd.json
if [ "${COT_DISTILL_SKIP_SOFTWARE_ADAPTER:-}" = 1 ]; then
  echo "setup: software adapter skipped (COT_DISTILL_SKIP_SOFTWARE_ADAPTER=1)"
elif [ -f "$ICD" ] && ldconfig -p | grep -q libvulkan.so.1; then
  echo "setup: software Vulkan adapter already in .vulkan/"
else
  if ! command -v apt-get >/dev/null; then
    echo "setup: no apt-get; install a Vulkan driver (Mesa >= 24 lavapipe or a GPU driver) and libvulkan1 yourself" >&2
    exit 1
  fi
  echo "setup: installing the software Vulkan adapter (libvulkan1 + Mesa 25 lavapipe from bookworm-backports)"
  src=/etc/apt/sources.list.d/cot-distill-bookworm-backports.sources
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | need_sudo tee "$src" >/dev/null
  fi
  need_sudo apt-get update -qq
  # lavapipe's runtime libraries: the Vulkan loader and LLVM 15 (its JIT), plus the X/Wayland client libs it links.
  need_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libvulkan1 libllvm15 libdrm2 libdrm-amdgpu1 libelf1 libexpat1 libwayland-client0 libx11-xcb1 libxcb-dri3-0 \
    libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxshmfence1 libzstd1 >/dev/null
  tmp=$(mktemp -d); chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq mesa-vulkan-drivers/bookworm-backports 2>/dev/null)
  rm -rf .vulkan.tmp && mkdir -p .vulkan.tmp
  dpkg -x "$tmp"/mesa-vulkan-drivers_*.deb "$tmp/root"
  cp "$tmp/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" .vulkan.tmp/
  printf '{"file_format_version":"1.0.0","ICD":{"library_path":"./libvulkan_lvp.so","api_version":"1.4.305"}}\n' \
    > .vulkan.tmp/lvp_icd.json
  rm -rf .vulkan "$tmp" && mv .vulkan.tmp .vulkan
  echo "setup: software adapter ready: $ICD"
fi

[ -f src/cli.ts ] && node_modules/.bin/bun src/cli.ts doctor || true
