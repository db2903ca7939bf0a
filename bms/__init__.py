"""BMS firmware-in-the-loop emulator.

The pack plant (numba kernels over structure-of-arrays state), its sensors and
contactors; later layers add the emulated BMS firmware and the CAN interface.
Sign convention, everywhere: positive current = discharge.
"""

from importlib.metadata import PackageNotFoundError, version

from bms.chemistry import Chemistry, available, load_chemistry
from bms.config import Config, load_config, preset, presets
from bms.errors import BmsError, ConfigError, InputError
from bms.plant import Measurement, Pack, Trace

try:
    __version__ = version("bms-emu")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BmsError",
    "Chemistry",
    "Config",
    "ConfigError",
    "InputError",
    "Measurement",
    "Pack",
    "Trace",
    "__version__",
    "available",
    "load_chemistry",
    "load_config",
    "preset",
    "presets",
]
