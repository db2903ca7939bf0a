"""A stand-in for a broken BMS behind a USB-CAN adapter: it answers with garbage.

Run as a script: an SLCAN adapter on a pty (its path on the first line of
stdout) with a "device" behind it that sends random frames: on identifiers in
no DBC, and on the BMS's own identifiers with random bytes (CRCs that fail).
Used by the HIL suite's tests; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import time

import can
import numpy as np

from bms.canbus.binding import load_binding
from bms.canbus.slcan_device import SlcanDevice


def main() -> int:
    rng = np.random.default_rng(7)
    binding = load_binding(None, {"cell_voltage_v": 200, "temp_c": 50, "bleed": 200})
    own = [bm.codec for bm in binding.messages.values() if bm.sender == "bms"]
    ch = "garbage-device"
    dev_bus = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    out = can.Bus(interface="virtual", channel=ch, receive_own_messages=False)
    device = SlcanDevice(dev_bus)
    device.start()
    print(f"slcan adapter on {device.tty_path}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            codec = own[int(rng.integers(len(own)))]
            data = bytes(rng.integers(0, 256, codec.length, dtype=np.uint8))
            out.send(
                can.Message(
                    arbitration_id=codec.frame_id, is_extended_id=codec.is_extended, data=data
                ),
                timeout=0.1,
            )
            junk = bytes(rng.integers(0, 256, 8, dtype=np.uint8))
            out.send(
                can.Message(arbitration_id=0x123, is_extended_id=False, data=junk), timeout=0.1
            )
            while out.recv(0.0) is not None:  # what the bench sends: not read by this device
                pass
            time.sleep(0.01)
    finally:
        device.stop()
        out.shutdown()
        dev_bus.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
