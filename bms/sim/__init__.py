"""Scenarios and time: drive and charge profiles, clocks and the scheduler."""
