# Multi-process runs (mpirun / srun) are optional: LOCKSTEP_MPI=AUTO builds them when an MPI C
# library is found (Debian's libopenmpi-dev), ON requires one, OFF leaves them out. Without MPI a
# multi-process launch is detected from the launcher's environment and refused with a message.
set(LOCKSTEP_HAVE_MPI OFF)
if(LOCKSTEP_MPI STREQUAL "OFF")
  set(LOCKSTEP_MPI_STATUS "OFF (LOCKSTEP_MPI=OFF)")
  return()
endif()
# FindMPI probes MPI's C library with the C compiler; lockstep calls that C API from C++.
enable_language(C)
find_package(MPI COMPONENTS C QUIET)
if(MPI_C_FOUND)
  set(LOCKSTEP_HAVE_MPI ON)
  set(LOCKSTEP_MPI_STATUS "ON: MPI ${MPI_C_VERSION} (${MPI_C_LIBRARIES})")
  # /usr/bin before /bin: Open MPI derives its install prefix from mpirun's path, and on merged-/usr
  # systems /bin/mpirun gives the prefix "/", which it refuses.
  find_program(LOCKSTEP_MPIRUN NAMES mpirun mpiexec PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(LOCKSTEP_MPIRUN NAMES mpirun mpiexec HINTS ${MPI_HOME}/bin)
elseif(LOCKSTEP_MPI STREQUAL "ON")
  message(FATAL_ERROR "LOCKSTEP_MPI=ON but no MPI C library was found (install libopenmpi-dev: tools/setup-deps.sh)")
else()
  set(LOCKSTEP_MPI_STATUS "OFF (no MPI found; install libopenmpi-dev for multi-process runs)")
endif()
