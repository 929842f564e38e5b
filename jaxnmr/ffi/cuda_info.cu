// What the CUDA library was built with and what the machine's driver offers, read through ctypes by
// jaxnmr.ffi.buildinfo (`jaxnmr doctor`). Neither call needs a GPU or creates a CUDA context.
#include <cuda_runtime_api.h>

#define JAXNMR_EXPORT extern "C" __attribute__((visibility("default")))

// CUDART_VERSION of the runtime the library was compiled and statically linked against: 13000 for CUDA 13.0.
JAXNMR_EXPORT int JaxnmrCudaRuntimeVersion() { return CUDART_VERSION; }

// The newest CUDA version the installed driver supports (13000: 13.0); 0 where there is no driver.
JAXNMR_EXPORT int JaxnmrCudaDriverVersion() {
  int version = 0;
  return cudaDriverGetVersion(&version) == cudaSuccess ? version : 0;
}
