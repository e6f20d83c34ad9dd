"""Which JAX platforms a process starts, decided before JAX loads its backends.

With libtpu installed (the `tpu` extra, for AOT compiles) JAX tries the TPU backend first on every
machine; on one without a TPU, libtpu then prints four or five lines of alarm on stderr ("could not
determine TPU accelerator type", ...) before JAX falls back to the CPU. Where no TPU is attached and no
NVIDIA GPU is visible, this selects the CPU platform up front, so libtpu is never initialised. A real
TPU (or a user's own JAX_PLATFORMS, or JAX_FORCE_TPU_INIT) is left alone, and so are its errors.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys

GOOGLE_PCI_VENDOR = "0x1ae0"  # TPU chips are PCI devices of Google's vendor id (as jax's hardware_utils reads)
NVIDIA_DEVICE_FILES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg")


def tpu_attached(pci_root: str = "/sys/bus/pci/devices") -> bool:
    for vendor in glob.glob(os.path.join(pci_root, "*", "vendor")):
        try:
            with open(vendor) as f:
                if f.read().strip() == GOOGLE_PCI_VENDOR:
                    return True
        except OSError:
            continue
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def cpu_only_platforms(environ=os.environ, pci_root: str = "/sys/bus/pci/devices") -> str | None:
    """"cpu" when libtpu would be tried and fail here, else None (JAX's own choice stands)."""
    if environ.get("JAX_PLATFORMS") or "JAX_FORCE_TPU_INIT" in environ or "TPU_ACCELERATOR_TYPE" in environ:
        return None
    if importlib.util.find_spec("libtpu") is None:
        return None  # nothing would print
    if tpu_attached(pci_root) or any(os.path.exists(d) for d in NVIDIA_DEVICE_FILES):
        return None
    return "cpu"


def quiet_without_tpu() -> None:
    """Select the CPU platform where libtpu would only print noise (see the module docstring).

    Sets JAX_PLATFORMS, which subprocesses inherit, and JAX's config when JAX is already imported
    (it read the variable then); it has no effect once JAX's backends are initialised."""
    platforms = cpu_only_platforms()
    if platforms is None:
        return
    os.environ["JAX_PLATFORMS"] = platforms
    if "jax" in sys.modules:
        sys.modules["jax"].config.update("jax_platforms", platforms)
