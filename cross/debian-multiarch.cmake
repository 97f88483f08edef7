# The part of the toolchain files shared by both ARM targets: Debian's
# <triplet>-gcc/g++ and the target's libraries from Debian's multiarch
# directories (/usr/lib/<triplet>, /usr/include/<triplet>), never the host's.
# Set EDGESYNC_CROSS_TRIPLET, EDGESYNC_CROSS_PROCESSOR and EDGESYNC_CROSS_QEMU
# before including it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${EDGESYNC_CROSS_PROCESSOR})
set(CMAKE_C_COMPILER ${EDGESYNC_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${EDGESYNC_CROSS_TRIPLET}-g++)
# find_library, find_path and find_package look in lib/<triplet> and
# lib/<triplet>/cmake, where Debian puts the target's multiarch files.
set(CMAKE_LIBRARY_ARCHITECTURE ${EDGESYNC_CROSS_TRIPLET})

# Multiarch shares one root with the host, so the root is / (plus whatever a
# build adds, e.g. an unpacked -dev package). Programs (pkg-config, python3,
# qemu) are the host's; libraries, headers and CMake packages only ever come
# from under the roots, and with CMAKE_LIBRARY_ARCHITECTURE set that means
# the target's lib/<triplet>, not the host's.
list(APPEND CMAKE_FIND_ROOT_PATH /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# The host's own multiarch directories are never searched, whatever the host is.
if(CMAKE_HOST_SYSTEM_PROCESSOR STREQUAL "x86_64")
  set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
                        /usr/include/x86_64-linux-gnu)
endif()

# pkg-config sees only the target's .pc files and the arch-independent ones.
set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/${EDGESYNC_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
unset(ENV{PKG_CONFIG_PATH})

# Cross-built programs run under qemu-user: gtest_discover_tests lists the
# tests with it and ctest runs them with it. -L / makes qemu use the target's
# dynamic loader and libraries that multiarch installs under / (libc6:<arch>).
find_program(EDGESYNC_CROSS_QEMU_PATH ${EDGESYNC_CROSS_QEMU} REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${EDGESYNC_CROSS_QEMU_PATH} -L /)
# Target libraries unpacked rather than installed (cross/build: ISA-L, which
# Debian 12 does not let two architectures install side by side) are found
# by the programs qemu runs through LD_LIBRARY_PATH (qemu's -E sets it for
# the target program only).
if(EDGESYNC_CROSS_LIBRARY_PATH)
  list(APPEND CMAKE_CROSSCOMPILING_EMULATOR -E LD_LIBRARY_PATH=${EDGESYNC_CROSS_LIBRARY_PATH})
endif()
