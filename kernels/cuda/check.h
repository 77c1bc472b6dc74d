// One error-check generator for CUDA, cuDNN, cuBLAS and NCCL (after ggml's CUDA_CHECK_GEN):
// every failing call throws lockstep::Error naming the library, its error string, the device,
// the statement, and file:line. Library code throws; it never exits.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <string>

namespace lockstep::cuda {

[[noreturn]] void throw_library_error(const char* library, int code, const char* error_string,
                                      const char* statement, const char* file, int line);

inline const char* cublas_error_string(cublasStatus_t s) { return cublasGetStatusString(s); }

}  // namespace lockstep::cuda

#define LS_CHECK_GEN(library, ok, err_string_fn, stmt)                                          \
  do {                                                                                          \
    auto ls_status_ = (stmt);                                                                   \
    if (ls_status_ != (ok))                                                                     \
      ::lockstep::cuda::throw_library_error(library, static_cast<int>(ls_status_),              \
                                            err_string_fn(ls_status_), #stmt, __FILE__, __LINE__); \
  } while (0)

#define CUDA_CHECK(stmt) LS_CHECK_GEN("CUDA", cudaSuccess, cudaGetErrorString, stmt)
#define CUDNN_CHECK(stmt) LS_CHECK_GEN("cuDNN", CUDNN_STATUS_SUCCESS, cudnnGetErrorString, stmt)
#define CUBLAS_CHECK(stmt) \
  LS_CHECK_GEN("cuBLAS", CUBLAS_STATUS_SUCCESS, ::lockstep::cuda::cublas_error_string, stmt)
#define NCCL_CHECK(stmt) LS_CHECK_GEN("NCCL", ncclSuccess, ncclGetErrorString, stmt)
// After a kernel launch: catches bad launch configurations at the call site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
