# Cross-compiling edgesync for 64-bit ARM Linux (Debian arm64) with Debian 12's
# cross compiler (g++-aarch64-linux-gnu) and the :arm64 multiarch -dev
# packages (cross/bootstrap aarch64 installs both). Test programs run under
# qemu-user. Use: cmake -DCMAKE_TOOLCHAIN_FILE=cross/aarch64-linux-gnu.cmake
set(EDGESYNC_CROSS_TRIPLET aarch64-linux-gnu)
set(EDGESYNC_CROSS_PROCESSOR aarch64)
set(EDGESYNC_CROSS_QEMU qemu-aarch64)
set(EDGESYNC_CROSS_DEB_ARCH arm64)  # the .deb's architecture (CPack)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
