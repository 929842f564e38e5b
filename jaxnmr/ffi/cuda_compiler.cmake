# Which CUDA compiler builds the CUDA library (JAXNMR_CUDA, see CMakeLists.txt), the toolkit made from PyPI
# wheels for JAXNMR_CUDA=pypi, and build_info.json, the record of what was built with what.

# jaxnmr_find_cuda_compiler(MODE NVCC FROM WHY): sets NVCC to the compiler to use ("" for none), FROM to where
# it came from (for messages and build_info.json) and WHY to why there is none.
function(jaxnmr_find_cuda_compiler mode out_nvcc out_from out_why)
  set(nvcc "")
  set(from "")
  set(why "")
  if(mode STREQUAL "off")
    set(why "the CUDA library is turned off (jaxnmr.cuda=off)")
  elseif(mode STREQUAL "pypi")
    jaxnmr_pypi_toolkit(nvcc from why)
  elseif(NOT "$ENV{CUDACXX}" STREQUAL "")
    set(nvcc "$ENV{CUDACXX}")
    set(from "the compiler CUDACXX names")
    if(NOT IS_ABSOLUTE "${nvcc}")
      find_program(named_nvcc "${nvcc}" NO_CACHE)
      set(nvcc "${named_nvcc}")
    endif()
    if(NOT EXISTS "${nvcc}")
      set(why "CUDACXX names '$ENV{CUDACXX}', which was not found")
      set(nvcc "")
    endif()
  else()
    # PATH alone: not CMake's own search, which also looks in /usr/local/cuda and the like.
    find_program(path_nvcc nvcc NO_CACHE NO_DEFAULT_PATH PATHS ENV PATH)
    if(path_nvcc)
      set(nvcc "${path_nvcc}")
      set(from "the nvcc on PATH")
    else()
      set(why "there is no nvcc on PATH and CUDACXX is not set (jaxnmr.cuda=${mode})")
    endif()
  endif()
  set(${out_nvcc} "${nvcc}" PARENT_SCOPE)
  set(${out_from} "${from}" PARENT_SCOPE)
  set(${out_why} "${why}" PARENT_SCOPE)
  set(JAXNMR_CUDA_TOOLKIT "${JAXNMR_CUDA_TOOLKIT}" PARENT_SCOPE)
endfunction()

# The wheels of JAXNMR_CUDA=pypi, each with a file that shows it is installed.
set(JAXNMR_PYPI_WHEELS
  "nvidia-cuda-nvcc=bin/nvcc"
  "nvidia-nvvm=nvvm/bin/cicc"
  "nvidia-cuda-crt=include/crt/host_config.h"
  "nvidia-cuda-runtime=lib/libcudart_static.a"
  "nvidia-cuda-cccl=include/cccl/cub/cub.cuh")

# The wheels put a CUDA toolkit's files under site-packages/nvidia/cu13, without the targets/<arch>/{include,lib}
# folders where their nvcc.profile looks for the headers and the static runtime. nvcc finds its profile, and
# from it everything else, relative to the path it is invoked by; so a folder in the build tree whose bin/ holds
# a link to each of the wheel's bin/ files, beside links to its include, lib and nvvm and a targets/ folder,
# is a complete toolkit, and nothing in site-packages is changed.
function(jaxnmr_pypi_toolkit out_nvcc out_from out_why)
  set(checks "")
  foreach(entry IN LISTS JAXNMR_PYPI_WHEELS)
    string(REPLACE "=" "', '" pair "${entry}")
    string(APPEND checks "('${pair}'), ")
  endforeach()
  # The nvidia/cu13 folder holding nvcc; then one line per wheel: name, version (or '-' when not installed),
  # and whether its file is in that folder.
  set(script "
import importlib.metadata as metadata, os, sys
try:
    import nvidia
except ImportError:
    sys.exit('no nvidia package is installed in the build environment')
roots = [os.path.join(p, 'cu13') for p in nvidia.__path__]
root = next((r for r in roots if os.path.isfile(os.path.join(r, 'bin', 'nvcc'))), roots[0])
print(root)
for name, probe in [${checks}]:
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        version = '-'
    print(name, version, int(os.path.exists(os.path.join(root, probe))))
")
  execute_process(COMMAND "${Python3_EXECUTABLE}" -c "${script}"
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    string(STRIP "${err}" err)
    set(${out_why} "the NVIDIA CUDA wheels were not found (${err}); they are this option's build requirements, \
installed by pip's build isolation (without --no-build-isolation, or install them yourself)" PARENT_SCOPE)
    set(${out_nvcc} "" PARENT_SCOPE)
    return()
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  list(POP_FRONT lines root)
  set(missing "")
  set(versions "")
  foreach(line IN LISTS lines)
    string(REPLACE " " ";" fields "${line}")
    list(GET fields 0 name)
    list(GET fields 1 version)
    list(GET fields 2 present)
    if(version STREQUAL "-" OR NOT present)
      list(APPEND missing "${name}")
    else()
      list(APPEND versions "${name} ${version}")
    endif()
  endforeach()
  if(missing)
    list(JOIN missing ", " missing)
    set(${out_why} "the build environment lacks ${missing} (in ${root})" PARENT_SCOPE)
    set(${out_nvcc} "" PARENT_SCOPE)
    return()
  endif()

  set(shim "${CMAKE_BINARY_DIR}/cuda-pypi")
  file(REMOVE_RECURSE "${shim}")  # removes the links, not what they point to
  file(MAKE_DIRECTORY "${shim}/bin")
  file(GLOB entries LIST_DIRECTORIES true "${root}/bin/*")
  foreach(entry IN LISTS entries)
    get_filename_component(name "${entry}" NAME)
    file(CREATE_LINK "${entry}" "${shim}/bin/${name}" SYMBOLIC)
  endforeach()
  foreach(part nvvm include lib)
    file(CREATE_LINK "${root}/${part}" "${shim}/${part}" SYMBOLIC)
  endforeach()
  file(CREATE_LINK "lib" "${shim}/lib64" SYMBOLIC)
  foreach(target x86_64-linux sbsa-linux)
    file(MAKE_DIRECTORY "${shim}/targets/${target}")
    foreach(part include lib)
      file(CREATE_LINK "../../${part}" "${shim}/targets/${target}/${part}" SYMBOLIC)
    endforeach()
    file(CREATE_LINK "../../lib" "${shim}/targets/${target}/lib64" SYMBOLIC)
  endforeach()
  list(JOIN versions ", " versions)
  set(JAXNMR_CUDA_TOOLKIT "${versions} (PyPI, in ${root})" PARENT_SCOPE)
  set(${out_nvcc} "${shim}/bin/nvcc" PARENT_SCOPE)
  set(${out_from} "the nvcc of the PyPI wheels" PARENT_SCOPE)
endfunction()

# jaxnmr_use_cuda_compiler(NVCC FROM): makes NVCC the CUDA compiler of this build folder. A folder configured
# before with another compiler (or another copy of the PyPI wheels) forgets it first: changed in place, CMake
# would wipe its cache and configure again without this run's options.
function(jaxnmr_use_cuda_compiler nvcc from)
  set(key "${nvcc}|${JAXNMR_CUDA_TOOLKIT}")
  if(DEFINED CACHE{CMAKE_CUDA_COMPILER} AND NOT "$CACHE{JAXNMR_CUDA_COMPILER_KEY}" STREQUAL "${key}")
    message(STATUS "jaxnmr: this build folder's CUDA compiler was '$CACHE{CMAKE_CUDA_COMPILER}'; identifying "
                   "the new one")
    file(REMOVE "${CMAKE_BINARY_DIR}/CMakeFiles/${CMAKE_VERSION}/CMakeCUDACompiler.cmake")
    unset(CMAKE_CUDA_COMPILER CACHE)
  endif()
  set(CMAKE_CUDA_COMPILER "${nvcc}" CACHE FILEPATH "CUDA compiler (chosen by JAXNMR_CUDA)" FORCE)
  set(JAXNMR_CUDA_COMPILER_KEY "${key}" CACHE INTERNAL "")
endfunction()

function(_jaxnmr_json_string out value)
  string(REPLACE "\\" "\\\\" value "${value}")
  string(REPLACE "\"" "\\\"" value "${value}")
  string(REPLACE "\n" "\\n" value "${value}")
  set(${out} "\"${value}\"" PARENT_SCOPE)
endfunction()

# jaxnmr_write_build_info(FILE): what was built, with which compilers, for which CUDA architectures, and if
# the CUDA library was not built, why. Read by jaxnmr.ffi (the reason a kernel is missing) and `jaxnmr doctor`.
function(jaxnmr_write_build_info file)
  _jaxnmr_json_string(mode "${JAXNMR_CUDA_MODE}")
  _jaxnmr_json_string(cxx "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} (${CMAKE_CXX_COMPILER})")
  if(TARGET jaxnmr_cuda)
    _jaxnmr_json_string(nvcc "${CMAKE_CUDA_COMPILER}")
    _jaxnmr_json_string(from "${JAXNMR_CUDA_FROM}")
    _jaxnmr_json_string(version "${CMAKE_CUDA_COMPILER_VERSION}")
    _jaxnmr_json_string(archs "${CMAKE_CUDA_ARCHITECTURES}")
    if(JAXNMR_CUDA_TOOLKIT)
      _jaxnmr_json_string(toolkit "${JAXNMR_CUDA_TOOLKIT}")
    else()
      _jaxnmr_json_string(toolkit "${CMAKE_CUDA_COMPILER_TOOLKIT_ROOT}")
    endif()
    set(cuda "{\"built\": true, \"compiler\": ${nvcc}, \"compiler_from\": ${from}, \"cuda_version\": ${version}, \
\"architectures\": ${archs}, \"toolkit\": ${toolkit}}")
  else()
    _jaxnmr_json_string(why "${JAXNMR_CUDA_WHY}")
    set(cuda "{\"built\": false, \"reason\": ${why}}")
  endif()
  file(WRITE "${file}" "{\n  \"jaxnmr.cuda\": ${mode},\n  \"cpu\": {\"built\": true, \"compiler\": ${cxx}},\n  \"cuda\": ${cuda}\n}\n")
endfunction()
