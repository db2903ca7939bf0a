"""The emulated BMS firmware: state estimation, balancing, protections, contactors, NVM."""
