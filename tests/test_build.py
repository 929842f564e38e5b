"""What was built and which kernel runs where: the kernel-or-reference choice per platform compiled for, the
warning and its reason when JAX's default back end has no kernel, the CMake choice of CUDA compiler (no nvcc on
PATH: the CPU library only, saying so), the build record and the device code read from the CUDA library."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import jax
import pytest

import jaxnmr
from jaxnmr import _primitive, cli, ffi, meshes, scale
from jaxnmr.ffi import buildinfo

KERNEL_CALL = "custom_call @jaxnmr_rasterize_forward"
SOURCES = pathlib.Path(ffi.__file__).parent


@pytest.fixture
def cuda_missing(monkeypatch):
    """The CUDA library reported missing, as on an install built without a CUDA compiler."""
    status = ffi.KernelStatus(False, SOURCES / "libjaxnmr_cuda.so", ffi._missing("cuda", SOURCES / "nowhere.so"))
    monkeypatch.setitem(ffi._STATUS, "cuda", status)
    _primitive.warn_no_kernel.cache_clear()
    yield status
    _primitive.warn_no_kernel.cache_clear()


def _exported(platforms) -> str:
    """A silhouette render lowered for ``platforms``, traced afresh (a new function each time)."""
    box = meshes.cube()
    vertices, faces = box.vertices, box.faces
    renderer = jaxnmr.Renderer(image_size=16)
    fn = jax.jit(lambda v: renderer.render_silhouettes(v, faces))
    return jax.export.export(fn, platforms=platforms, disabled_checks=scale._disabled_checks())(vertices).mlir_module()


def test_without_the_cuda_library_cpu_work_still_gets_the_cpu_kernel(cuda_missing):
    assert KERNEL_CALL in _exported(["cpu"])
    assert KERNEL_CALL not in _exported(["cuda"])  # the pure-jnp reference there
    assert _exported(["cpu", "cuda"]).count(KERNEL_CALL) == 1  # one module, each platform its own branch


@pytest.mark.skipif(not (ffi.kernel_available("cpu") and ffi.kernel_available("cuda")),
                    reason="needs both kernel libraries built")
def test_with_both_libraries_each_platform_gets_its_kernel():
    assert KERNEL_CALL in _exported(["cpu"])
    assert KERNEL_CALL in _exported(["cuda"])


def test_a_gpu_default_without_the_cuda_kernel_warns_why_and_the_command(cuda_missing, monkeypatch):
    monkeypatch.setattr(_primitive, "default_platform", lambda: "cuda")
    with pytest.warns(RuntimeWarning) as record:
        _primitive.warn_if_no_kernel()
    message = str(record[0].message)
    assert cuda_missing.reason in message
    assert "-C jaxnmr.cuda=pypi" in message and "[cuda]" in message
    assert "pure-jnp reference" in message


@pytest.mark.parametrize("record, expected", [
    ({"cuda": {"built": False, "reason": "there is no nvcc on PATH and CUDACXX is not set"}},
     "was not built when jaxnmr was installed: there is no nvcc on PATH and CUDACXX is not set"),
    ({"cuda": {"built": True}}, "was built when jaxnmr was installed but is no longer in"),
    (None, "there is no build record beside it"),
])
def test_the_missing_reason_comes_from_the_build_record(monkeypatch, record, expected):
    monkeypatch.setattr(buildinfo, "build_info", lambda: record)
    reason = ffi._missing("cuda", SOURCES / "libjaxnmr_cuda.so")
    assert expected in reason
    assert reason.endswith(buildinfo.cuda_install_command())
    assert "jaxnmr.cuda=pypi" not in ffi._missing("cpu", SOURCES / "libjaxnmr_cpu.so")


def test_the_install_command_names_the_extra_and_the_option():
    command = buildinfo.cuda_install_command()
    assert command.startswith("pip install ") and "[cuda]" in command and "-C jaxnmr.cuda=pypi" in command


# --- the device code reader, on a synthetic library and on the built one -------------------------------------

def _cubin(arch: int, abi: int) -> bytes:
    """The 64-byte ELF header of a cubin for sm_<arch> (EM_CUDA), its SM where ELF ABI version ``abi`` puts it."""
    header = bytearray(64)
    header[:9] = b"\x7fELF\x02\x01\x01\x41" + bytes([abi])
    struct.pack_into("<H", header, 18, 190)
    struct.pack_into("<I", header, 48, (arch << 8 | 0x6000004) if abi >= 8 else (0x500000 | arch))
    return bytes(header)


def _fatbin(pieces) -> bytes:
    """A fat binary of (kind, arch, payload) entries: kind 2 cubin, 1 PTX."""
    entries = b""
    for kind, arch, payload in pieces:
        header = bytearray(64)
        struct.pack_into("<HHIQ", header, 0, kind, 0x0101, 64, len(payload))
        struct.pack_into("<I", header, 28, arch)
        entries += bytes(header) + payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(entries)) + entries


def _shared_library(fatbins: bytes) -> bytes:
    """A little-endian ELF64 file with two sections besides the null one: .shstrtab and .nv_fatbin."""
    names = b"\0.shstrtab\0.nv_fatbin\0"
    body_offset = 64
    fatbin_offset = body_offset + len(names)
    section_offset = (fatbin_offset + len(fatbins) + 7) & ~7
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, section_offset)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 1)
    sections = bytes(64)
    sections += struct.pack("<IIQQQQ", 1, 3, 0, 0, body_offset, len(names)).ljust(64, b"\0")
    sections += struct.pack("<IIQQQQ", 11, 1, 2, 0, fatbin_offset, len(fatbins)).ljust(64, b"\0")
    padding = bytes(section_offset - fatbin_offset - len(fatbins))
    return bytes(header) + names + fatbins + padding + sections


@pytest.mark.parametrize("abi", [7, 8])
def test_device_code_reads_each_cubins_own_sm(tmp_path, abi):
    # The entry headers say 0: the cubins' sm numbers can only come from their own ELF headers.
    first = _fatbin([(2, 0, _cubin(80, abi)), (1, 90, b"ptx"), (2, 0, _cubin(90, abi))])
    second = _fatbin([(2, 0, _cubin(80, abi))])
    path = tmp_path / "lib.so"
    path.write_bytes(_shared_library(first + bytes((-len(first)) % 8) + second))
    assert buildinfo.device_code(path) == [("cubin", 80), ("ptx", 90), ("cubin", 90), ("cubin", 80)]
    assert buildinfo._architectures(buildinfo.device_code(path)) == \
        "machine code (cubin) for sm_80, sm_90; PTX for compute_90"


def test_device_code_refuses_a_library_without_device_code():
    with pytest.raises(ValueError, match="no .nv_fatbin section"):
        buildinfo.device_code(ffi.kernel_status("cpu").path)


@pytest.mark.skipif(not ffi.kernel_status("cuda").path.is_file(), reason="the CUDA library is not built")
def test_the_cuda_library_holds_ampere_and_hopper_machine_code_and_ptx():
    code = buildinfo.device_code(ffi.kernel_status("cuda").path)
    cubins = {piece.arch for piece in code if piece.kind == "cubin"}
    assert {80, 90} <= cubins, code
    assert 90 in {piece.arch for piece in code if piece.kind == "ptx"}, code


def test_doctor_says_what_was_built_and_what_loaded(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"jaxnmr {jaxnmr.__version__}" in out
    assert "cpu kernels: loaded and registered" in out
    assert "cuda kernels: " in out
    if ffi.kernel_status("cuda").path.is_file():
        assert "device code: machine code (cubin) for sm_80, sm_90" in out


# --- CMake's choice of CUDA compiler (configure only, no build) -----------------------------------------------

def _path_without_nvcc() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not os.path.exists(os.path.join(d, "nvcc")))


def _configure(tmp_path, *defines, env=None):
    build = tmp_path / "build"
    environment = {k: v for k, v in os.environ.items() if k != "CUDACXX"}
    environment.update(PATH=_path_without_nvcc(), **(env or {}))
    command = [shutil.which("cmake"), "-S", str(SOURCES), "-B", str(build),
               f"-DPython3_EXECUTABLE={sys.executable}", *defines]
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    info = build / "build_info.json"
    result.stderr = " ".join(result.stderr.split())  # CMake wraps its error messages
    return result, (json.loads(info.read_text()) if info.is_file() else None)


needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


@needs_cmake
def test_no_nvcc_on_path_builds_the_cpu_library_only_and_says_so_in_one_line(tmp_path):
    result, info = _configure(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "building the CPU library only" in line]
    assert len(lines) == 1, result.stdout
    assert "no nvcc on PATH" in lines[0] and "-C jaxnmr.cuda=pypi" in lines[0]
    # even where a toolkit sits in /usr/local/cuda, which CMake's own search would find
    assert info["cuda"] == {"built": False,
                            "reason": "there is no nvcc on PATH and CUDACXX is not set (jaxnmr.cuda=auto)"}
    assert info["cpu"]["built"] is True


@needs_cmake
def test_required_cuda_without_a_compiler_fails_the_configure(tmp_path):
    result, _ = _configure(tmp_path, "-DJAXNMR_CUDA=on")
    assert result.returncode != 0
    assert "asks for the CUDA library, but there is no nvcc on PATH" in result.stderr


@needs_cmake
def test_cudacxx_naming_no_file_and_an_unknown_mode_are_reported(tmp_path):
    result, info = _configure(tmp_path, env={"CUDACXX": "/nowhere/bin/nvcc"})
    assert result.returncode == 0, result.stderr
    assert info["cuda"]["reason"] == "CUDACXX names '/nowhere/bin/nvcc', which was not found"
    result, _ = _configure(tmp_path, "-DJAXNMR_CUDA=sometimes")
    assert result.returncode != 0 and "expected auto, on, pypi or off" in result.stderr


@needs_cmake
@pytest.mark.skipif(importlib.util.find_spec("nvidia") is not None, reason="NVIDIA wheels are installed here")
def test_pypi_mode_without_the_wheels_fails_and_says_why(tmp_path):
    result, _ = _configure(tmp_path, "-DJAXNMR_CUDA=pypi")
    assert result.returncode != 0
    assert "jaxnmr.cuda=pypi asks for the CUDA library, but the NVIDIA CUDA wheels were not found" in result.stderr
