"""Discrete-GPU operating-point controllers."""
