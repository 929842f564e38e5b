"""What was built when jaxnmr was installed, and what the CUDA library holds: the build record
(``build_info.json``, written by CMake beside the libraries), the device code in ``libjaxnmr_cuda.so`` (read
from its ELF file, no CUDA needed) and the CUDA versions involved. ``jaxnmr doctor`` prints :func:`report`.

Nothing here imports JAX or initialises a back end, except :func:`report`, which lists JAX's devices.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.resources
import json
import os
import pathlib
import shlex
import struct
import urllib.parse
import urllib.request
from typing import Any, Callable, NamedTuple

__all__ = ["BUILD_INFO", "DeviceCode", "build_info", "device_code", "cuda_versions", "cuda_install_command",
           "report"]

BUILD_INFO = "build_info.json"
# The one command that gives a JAX GPU user the CUDA kernels, from a jaxnmr source folder (README, "GPU").
CUDA_INSTALL_COMMAND = 'pip install ".[cuda]" -C jaxnmr.cuda=pypi'


def _package_file(name: str) -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("jaxnmr.ffi") / name))


def build_info() -> dict | None:
    """The build record installed beside the libraries, or None where there is none (a source tree whose
    libraries were copied in by hand). Keys: ``"jaxnmr.cuda"`` (the install option), ``"cpu"`` and ``"cuda"``
    (each with ``"built"``; the CUDA one with ``"compiler"``, ``"cuda_version"``, ``"architectures"`` and
    ``"toolkit"``, or with ``"reason"`` when it was not built)."""
    try:
        return json.loads(_package_file(BUILD_INFO).read_text())
    except (OSError, ValueError):
        return None


def cuda_install_command() -> str:
    """The command that builds the CUDA library without a CUDA toolkit. When jaxnmr was installed from a local
    folder that still exists, it names that folder; otherwise it is :data:`CUDA_INSTALL_COMMAND`, to be run in a
    jaxnmr source folder."""
    try:
        direct = json.loads(importlib.metadata.distribution("jaxnmr").read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        direct = {}
    url = direct.get("url", "")
    if url.startswith("file://") and "dir_info" in direct:
        folder = pathlib.Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        if (folder / "pyproject.toml").is_file():
            return f"pip install {shlex.quote(f'{folder}[cuda]')} -C jaxnmr.cuda=pypi"
    return CUDA_INSTALL_COMMAND + " (in the jaxnmr source folder)"


class DeviceCode(NamedTuple):
    """One piece of device code in a CUDA library's fat binary.

    kind: "cubin" (machine code for one GPU generation) or "ptx" (compiled by the driver for newer GPUs).
    arch: the compute capability times 10 (80: sm_80, A100; 90: sm_90, H100/H200). For a cubin it is read from
      the cubin's own ELF header where the cubin is stored uncompressed, else from the fat binary's entry.
    """

    kind: str
    arch: int


_FATBIN_MAGIC = 0xBA55ED50
_EM_CUDA = 190


def _sections(data: bytes) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of a little-endian ELF64 file's sections."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx][4]
    sections = {}
    for name, _, _, _, offset, size in headers:
        start = names + name
        sections[data[start:data.index(b"\0", start)].decode()] = (offset, size)
    return sections


def _cubin_arch(cubin: bytes) -> int | None:
    """The SM number in a cubin's ELF header (e_flags; its byte 1 from ELF ABI version 8 on, byte 0 before)."""
    if len(cubin) < 52 or cubin[:4] != b"\x7fELF" or struct.unpack_from("<H", cubin, 18)[0] != _EM_CUDA:
        return None
    flags, = struct.unpack_from("<I", cubin, 48)
    return (flags >> 8) & 0xFF if cubin[8] >= 8 else flags & 0xFF


def device_code(path: str | os.PathLike) -> list[DeviceCode]:
    """The cubins and PTX in the ``.nv_fatbin`` section of the shared library at ``path`` (one fat binary per
    compiled .cu file, each listing its pieces). Raises ValueError if the file has no fat binary."""
    data = pathlib.Path(path).read_bytes()
    sections = _sections(data)
    if ".nv_fatbin" not in sections:
        raise ValueError(f"{path} has no .nv_fatbin section (no CUDA device code)")
    offset, size = sections[".nv_fatbin"]
    code = []
    position, end = offset, offset + size
    while position + 16 <= end:
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, position)
        if magic != _FATBIN_MAGIC:
            break
        entry, entries_end = position + header_size, position + header_size + fat_size
        while entry + 32 <= entries_end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch, = struct.unpack_from("<I", data, entry + 28)
            start = entry + entry_header
            if kind == 2:
                code.append(DeviceCode("cubin", _cubin_arch(data[start:start + 64]) or arch))
            elif kind == 1:
                code.append(DeviceCode("ptx", arch))
            entry = start + payload
        position = offset + ((entries_end - offset + 7) & ~7)  # the next one starts 8-aligned
    if not code:
        raise ValueError(f"{path}: no cubin or PTX found in its .nv_fatbin section")
    return code


def _version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}" if number else "none"


def cuda_versions(path: str | os.PathLike) -> dict[str, str]:
    """``{"runtime": ..., "driver": ...}`` from the CUDA library at ``path``: the CUDA runtime it was compiled and
    statically linked against, and the newest CUDA the machine's driver supports ("none" without a driver)."""
    library = ctypes.CDLL(str(path))
    return {"runtime": _version(library.JaxnmrCudaRuntimeVersion()),
            "driver": _version(library.JaxnmrCudaDriverVersion())}


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _architectures(code: list[DeviceCode]) -> str:
    cubins = sorted({piece.arch for piece in code if piece.kind == "cubin"})
    ptx = sorted({piece.arch for piece in code if piece.kind == "ptx"})
    return (f"machine code (cubin) for {', '.join(f'sm_{a}' for a in cubins) or 'no GPU'}; "
            f"PTX for {', '.join(f'compute_{a}' for a in ptx) or 'none'}")


def report(version: str, kernel_status: Callable[[str], Any]) -> str:
    """What ``jaxnmr doctor`` prints: jaxnmr's and JAX's versions and devices, the build record, each kernel
    library's status, and for the CUDA library its device code and CUDA versions.

    Args:
      version: jaxnmr's version (``jaxnmr.__version__``).
      kernel_status: :func:`jaxnmr.ffi.kernel_status` (passed in, so that this module imports nothing of
        jaxnmr: the package imports it while loading the kernels).
    """
    import jax

    lines = [f"jaxnmr {version} ({pathlib.Path(__file__).resolve().parents[1]})",
             "installed: " + ", ".join(f"{name} {_distribution_version(name)}" for name in
                                 ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin")
                                 if _distribution_version(name))]
    try:
        lines.append("JAX devices: " + ", ".join(f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices())
                     + f"; default back end: {jax.default_backend()}")
    except RuntimeError as error:
        lines.append(f"JAX devices: none ({error})")
    info = build_info()
    if info is None:
        lines.append(f"build record: none ({BUILD_INFO} is not beside the libraries: not installed by pip)")
    else:
        lines.append(f"built with jaxnmr.cuda={info.get('jaxnmr.cuda')}; C++ compiler: "
                     f"{info.get('cpu', {}).get('compiler')}")
        cuda = info.get("cuda", {})
        if cuda.get("built"):
            lines.append(f"CUDA library built with {cuda.get('compiler_from')}: {cuda.get('compiler')}, "
                         f"CUDA {cuda.get('cuda_version')}, architectures {cuda.get('architectures')}")
            lines.append(f"  toolkit: {cuda.get('toolkit')}")
        else:
            lines.append(f"CUDA library not built: {cuda.get('reason')}")
    for platform in ("cpu", "cuda"):
        status = kernel_status(platform)
        state = "loaded and registered" if status.available else f"NOT available: {status.reason}"
        lines.append(f"{platform} kernels: {state} ({status.path})")
    cuda_library = kernel_status("cuda").path
    if cuda_library.is_file():
        try:
            lines.append(f"  device code: {_architectures(device_code(cuda_library))}")
        except (OSError, ValueError) as error:
            lines.append(f"  device code: unreadable ({error})")
        try:
            versions = cuda_versions(cuda_library)
            lines.append(f"  CUDA runtime compiled in: {versions['runtime']}; "
                         f"this machine's driver supports CUDA: {versions['driver']}")
        except (OSError, AttributeError) as error:
            lines.append(f"  CUDA versions: unreadable ({error})")
    return "\n".join(lines)
