"""The HIL test suite: a pytest plugin that judges a BMS over CAN, emulated or real."""
