"""NVIDIA GPU graphics clocks through NVML (package nvidia-ml-py, module `pynvml`).

Settings are the supported graphics clocks at the highest memory clock, in Hz ("1980000000").
`apply` locks the graphics clock with nvmlDeviceSetGpuLockedClocks(h, f, f) (needs root);
`restore` calls nvmlDeviceResetGpuLockedClocks. NVML offers no getter for locked clocks, so the
"saved state" is just the device's UUID; restore always resets.

`pynvml` is imported lazily (only when an NVML controller or meter is built). Never run this on a
shared GPU machine: locking clocks affects every user of the card.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType
from typing import Any, Callable

from dime.errors import DimeError
from dime.profiling.device.common import Controller, DvfsError, check_setting

log = logging.getLogger(__name__)

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4


def import_pynvml(error: type[DimeError] = DvfsError) -> ModuleType:
    """Import pynvml or raise `error` saying how to install it."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as e:
        raise error("NVML needs the nvidia-ml-py package: pip install nvidia-ml-py") from e


def nvml_error_code(nvml: ModuleType, exc: BaseException) -> int | None:
    """The NVML error code of an exception raised by pynvml, or None if it is not one."""
    err_cls = getattr(nvml, "NVMLError", None)
    if err_cls is not None and isinstance(exc, err_cls):
        code = getattr(exc, "value", None)
        return int(code) if isinstance(code, int) else None
    return None


def is_not_supported(nvml: ModuleType, exc: BaseException) -> bool:
    code = nvml_error_code(nvml, exc)
    return code == getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED)


def nvml_call(
    nvml: ModuleType,
    fn: Callable[..., Any],
    *args: Any,
    what: str,
    error: type[DimeError] = DvfsError,
) -> Any:
    """Call a pynvml function; turn NVMLError into `error` with a one-line message."""
    try:
        return fn(*args)
    except Exception as e:
        code = nvml_error_code(nvml, e)
        if code is None:
            raise
        if code == getattr(nvml, "NVML_ERROR_NO_PERMISSION", NVML_ERROR_NO_PERMISSION):
            raise error(f"NVML: permission denied to {what}: this needs root") from e
        if code == getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED):
            raise error(f"NVML: this GPU does not support {what}") from e
        raise error(f"NVML: cannot {what}: {e}") from e


def nvml_handle(nvml: ModuleType, device_index: int, error: type[DimeError] = DvfsError) -> Any:
    nvml_call(nvml, nvml.nvmlInit, what="initialise NVML (is the NVIDIA driver loaded?)",
              error=error)
    count = nvml_call(nvml, nvml.nvmlDeviceGetCount, what="count GPUs", error=error)
    if not 0 <= device_index < count:
        raise error(f"NVML: no GPU with index {device_index} ({count} found)")
    return nvml_call(nvml, nvml.nvmlDeviceGetHandleByIndex, device_index,
                     what=f"open GPU {device_index}", error=error)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlGpuController(Controller):
    kind = "freq_hz"
    name = "nvml-gpu"

    def __init__(
        self,
        device_index: int = 0,
        *,
        state_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(state_dir=state_dir)
        self.device_index = int(device_index)
        self._nvml = import_pynvml(DvfsError)
        self._handle = nvml_handle(self._nvml, self.device_index)
        self.uuid = _text(nvml_call(self._nvml, self._nvml.nvmlDeviceGetUUID, self._handle,
                                    what="read the GPU UUID"))
        self._clocks_mhz = self._supported_clocks_mhz()
        if not self._clocks_mhz:
            raise DvfsError(f"NVML: GPU {self.device_index} lists no graphics clocks")

    @classmethod
    def unavailable_reason(cls, device_index: int = 0, **kw: Any) -> str | None:
        try:
            nvml = import_pynvml(DvfsError)
        except DvfsError as e:
            return str(e)
        try:
            h = nvml_handle(nvml, int(device_index))
            mems = nvml_call(nvml, nvml.nvmlDeviceGetSupportedMemoryClocks, h,
                             what="list memory clocks")
            if not mems:
                return "the GPU lists no memory clocks"
        except DvfsError as e:
            return str(e)
        finally:
            try:
                nvml.nvmlShutdown()
            except Exception:  # not initialised
                pass
        return None

    def _supported_clocks_mhz(self) -> list[int]:
        nvml = self._nvml
        mems = nvml_call(nvml, nvml.nvmlDeviceGetSupportedMemoryClocks, self._handle,
                         what="list memory clocks")
        if not mems:
            return []
        mem = max(int(m) for m in mems)
        gfx = nvml_call(nvml, nvml.nvmlDeviceGetSupportedGraphicsClocks, self._handle, mem,
                        what="list graphics clocks")
        return sorted({int(g) for g in gfx})

    def _identity(self) -> str:
        return f"nvml-gpu:{self.uuid}"

    def settings(self) -> list[str]:
        return [str(mhz * 1_000_000) for mhz in self._clocks_mhz]

    def apply(self, setting: str) -> None:
        check_setting(self, setting, self.settings())
        self._ensure_saved()
        mhz = int(setting) // 1_000_000
        nvml_call(self._nvml, self._nvml.nvmlDeviceSetGpuLockedClocks, self._handle, mhz, mhz,
                  what=f"lock GPU {self.device_index} clocks at {mhz} MHz")

    def _read_state(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "device_index": self.device_index}

    def _write_state(self, state: dict[str, Any]) -> None:
        uuid = state.get("uuid")
        if uuid and uuid != self.uuid:
            raise DvfsError(f"NVML: state is for GPU {uuid}, this is {self.uuid}")
        nvml_call(self._nvml, self._nvml.nvmlDeviceResetGpuLockedClocks, self._handle,
                  what=f"reset GPU {self.device_index} locked clocks")

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as e:  # shutting down is best effort
            log.debug("nvmlShutdown: %s", e)
