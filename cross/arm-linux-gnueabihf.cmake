# Cross-compiling edgesync for 32-bit ARM Linux, hard float (Debian armhf:
# ARMv7, 32-bit size_t and, in Debian 12, 32-bit time_t) with Debian 12's
# cross compiler (g++-arm-linux-gnueabihf) and the :armhf multiarch -dev
# packages (cross/bootstrap armhf installs both). Test programs run under
# qemu-user. Use: cmake -DCMAKE_TOOLCHAIN_FILE=cross/arm-linux-gnueabihf.cmake
set(EDGESYNC_CROSS_TRIPLET arm-linux-gnueabihf)
set(EDGESYNC_CROSS_PROCESSOR arm)
set(EDGESYNC_CROSS_QEMU qemu-arm)
set(EDGESYNC_CROSS_DEB_ARCH armhf)  # the .deb's architecture (CPack)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
