# Finds the CUDA toolkit, cuBLAS, cuDNN 9 and NCCL 2 for LOCKSTEP_CUDA=AUTO|ON|OFF.
# cuDNN and NCCL are looked for in CUDNN_ROOT / NCCL_ROOT, the toolkit's folders, the usual
# system prefixes, and the nvidia/<lib>/{include,lib} folders of Python site-packages (where
# GPU machines that carry PyTorch keep them, often as versioned .so files only).
# Result: LOCKSTEP_HAVE_CUDA, LOCKSTEP_CUDA_STATUS, and the INTERFACE target lockstep_cuda_libs.

set(LOCKSTEP_HAVE_CUDA OFF)
set(LOCKSTEP_CUDA_STATUS "off (LOCKSTEP_CUDA=OFF)")
if(LOCKSTEP_CUDA STREQUAL "OFF")
  return()
endif()
if(NOT LOCKSTEP_CUDA MATCHES "^(AUTO|ON)$")
  message(FATAL_ERROR "LOCKSTEP_CUDA must be AUTO, ON or OFF, got '${LOCKSTEP_CUDA}'")
endif()

function(_lockstep_cuda_missing what)
  if(LOCKSTEP_CUDA STREQUAL "ON")
    message(FATAL_ERROR "LOCKSTEP_CUDA=ON but ${what} was not found")
  endif()
  set(LOCKSTEP_CUDA_STATUS "off (${what} not found)" PARENT_SCOPE)
endfunction()

include(CheckLanguage)
if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "nvcc")
endif()
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  _lockstep_cuda_missing("the CUDA compiler (nvcc)")
  return()
endif()
find_package(CUDAToolkit QUIET)
if(NOT CUDAToolkit_FOUND)
  _lockstep_cuda_missing("the CUDA toolkit")
  return()
endif()

# Python site-packages holding nvidia/<lib> wheels.
set(_py_nvidia "")
find_program(_lockstep_python NAMES python3 python)
if(_lockstep_python)
  execute_process(
    COMMAND ${_lockstep_python} -c "import site,sys; print(';'.join(site.getsitepackages()+[site.getusersitepackages()]))"
    OUTPUT_VARIABLE _sites OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  foreach(_s IN LISTS _sites)
    if(EXISTS "${_s}/nvidia")
      list(APPEND _py_nvidia "${_s}/nvidia")
    endif()
  endforeach()
endif()

function(_lockstep_find_lib prefix header libname sover root_var wheel)
  set(_hints "")
  if(DEFINED ENV{${root_var}})
    list(APPEND _hints "$ENV{${root_var}}")
  endif()
  if(DEFINED ${root_var})
    list(APPEND _hints "${${root_var}}")
  endif()
  list(APPEND _hints "${CUDAToolkit_LIBRARY_ROOT}" "${CUDAToolkit_TARGET_DIR}" /usr/local/cuda /usr/local /usr)
  foreach(_p IN LISTS _py_nvidia)
    list(APPEND _hints "${_p}/${wheel}")
  endforeach()
  find_path(${prefix}_INCLUDE_DIR ${header} HINTS ${_hints}
    PATH_SUFFIXES include include/x86_64-linux-gnu NO_CACHE)
  find_library(${prefix}_LIBRARY NAMES ${libname} lib${libname}.so.${sover} HINTS ${_hints}
    PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu NO_CACHE)
  set(${prefix}_INCLUDE_DIR "${${prefix}_INCLUDE_DIR}" PARENT_SCOPE)
  set(${prefix}_LIBRARY "${${prefix}_LIBRARY}" PARENT_SCOPE)
endfunction()

_lockstep_find_lib(CUDNN cudnn.h cudnn 9 CUDNN_ROOT cudnn)
_lockstep_find_lib(NCCL nccl.h nccl 2 NCCL_ROOT nccl)

if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
  _lockstep_cuda_missing("cuDNN 9")
  return()
endif()
file(STRINGS "${CUDNN_INCLUDE_DIR}/cudnn_version.h" _cudnn_major REGEX "#define CUDNN_MAJOR")
if(NOT _cudnn_major MATCHES "CUDNN_MAJOR[ \t]+9")
  _lockstep_cuda_missing("cuDNN 9 (found ${_cudnn_major} in ${CUDNN_INCLUDE_DIR})")
  return()
endif()
if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
  _lockstep_cuda_missing("NCCL 2")
  return()
endif()
if(NOT TARGET CUDA::cublas)
  _lockstep_cuda_missing("cuBLAS")
  return()
endif()

enable_language(CUDA)
# CMake 3.25 predates nvcc's C++20 support; teach it the flag (nvcc 12+ accepts -std=c++20).
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

add_library(lockstep_cuda_libs INTERFACE)
target_include_directories(lockstep_cuda_libs INTERFACE ${CUDNN_INCLUDE_DIR} ${NCCL_INCLUDE_DIR})
target_link_libraries(lockstep_cuda_libs INTERFACE
  CUDA::cudart CUDA::cublas CUDA::cublasLt ${CUDNN_LIBRARY} ${NCCL_LIBRARY})

set(LOCKSTEP_HAVE_CUDA ON)
set(LOCKSTEP_CUDA_STATUS "ON: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, sm_${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${CUDNN_LIBRARY}, NCCL ${NCCL_LIBRARY}")
