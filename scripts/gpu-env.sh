# Sourced by the test and bench runners: makes the project's software Vulkan adapter (.vulkan/, installed by
# scripts/setup.sh) visible to the Vulkan loader, unless the user chose drivers explicitly. A real GPU driver stays
# visible too (VK_ADD_DRIVER_FILES adds, it does not replace), and Dawn prefers it.
if [ -f .vulkan/lvp_icd.json ] && [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
  case ":${VK_ADD_DRIVER_FILES:-}:" in
    *":$PWD/.vulkan/lvp_icd.json:"*) ;;
    *) export VK_ADD_DRIVER_FILES="$PWD/.vulkan/lvp_icd.json${VK_ADD_DRIVER_FILES:+:$VK_ADD_DRIVER_FILES}" ;;
  esac
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
