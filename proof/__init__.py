"""Proof layer: firmware outputs against the exact QKeras reference — bit comparison, localisation, overflow."""
