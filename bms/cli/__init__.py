"""Command line: ``bms-emu <subcommand>``, one module per subcommand."""

__all__ = ["sim_time"]


def sim_time(seconds: float) -> str:
    """A simulated time as a person reads it in a summary: seconds under a minute,
    minutes under an hour, hours above."""
    if seconds < 60.0:
        return f"{seconds:.1f} s"
    if seconds < 3600.0:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
