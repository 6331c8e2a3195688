# Cross-compiling cpp/ for 64-bit ARM (Raspberry Pi 3/4/5 class boards) on Debian:
#   apt-get install g++-aarch64-linux-gnu libopenblas-dev:arm64   (after dpkg --add-architecture arm64)
#   cmake -S cpp -B build/aarch64 -DCMAKE_TOOLCHAIN_FILE=cpp/toolchains/aarch64-linux-gnu.cmake \
#         -DFRAMEGATE_BUILD_PYTHON=OFF && cmake --build build/aarch64 --target framegate_driver
# Debian's multiarch layout puts the arm64 OpenBLAS in /usr/lib/aarch64-linux-gnu and its
# cblas.h under /usr/include/aarch64-linux-gnu, which CMake searches for this library
# architecture. -march=armv8-a: every 64-bit ARM core has NEON (Advanced SIMD); -O3 (Release)
# vectorizes the kernels' element loops with it; the GEMMs are OpenBLAS's own NEON kernels.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_CXX_FLAGS_INIT "-march=armv8-a")
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
