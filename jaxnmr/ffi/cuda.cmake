# The CUDA library: the same raster.h and points.h math as the CPU library, launched as grids (raster_cuda.cu,
# points_cuda.cu).
# Included by CMakeLists.txt when a CUDA compiler is found; CI compiles it on every run (no GPU needed).
add_library(jaxnmr_cuda SHARED raster_cuda.cu)
target_include_directories(jaxnmr_cuda SYSTEM PRIVATE "${XLA_FFI_INCLUDE_DIR}")
target_include_directories(jaxnmr_cuda PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}")
set_target_properties(jaxnmr_cuda PROPERTIES
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_RUNTIME_LIBRARY Static          # no dependency on a CUDA runtime being installed beside jax
  CUDA_VISIBILITY_PRESET hidden)
# --fmad=false: no fused multiply-add, so the GPU does the same float32 arithmetic as the CPU kernels.
# Diagnostics 940 and 2473 come from the XLA FFI headers, not from this project.
target_compile_options(jaxnmr_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 --fmad=false --diag-suppress=940,2473 -Xcompiler=-Wno-attributes>)
install(TARGETS jaxnmr_cuda LIBRARY DESTINATION "${JAXNMR_LIB_DEST}")
# The versions `jaxnmr doctor` reports: the CUDA runtime compiled in, the driver's (cuda_info.cu).
target_sources(jaxnmr_cuda PRIVATE cuda_info.cu)
# The point rasterizer (points.h's work items).
target_sources(jaxnmr_cuda PRIVATE points_cuda.cu)
