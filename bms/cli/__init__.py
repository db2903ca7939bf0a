"""Command line: ``bms-emu <subcommand>``, one module per subcommand."""
