"""Benchmarks of the emulator (``make bench``): they print figures, they assert nothing."""
