"""Shipped emulator weights, one folder per version (package data, found with importlib.resources)."""
