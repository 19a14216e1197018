"""Operating-point (DVFS) controllers: list, apply and restore clock settings."""

from dime.profiling.device.common import (
    CONTROLLER_KINDS,
    Controller,
    DvfsError,
    NoneController,
)
from dime.profiling.device.registry import make_controller

__all__ = ["CONTROLLER_KINDS", "Controller", "DvfsError", "NoneController", "make_controller"]
