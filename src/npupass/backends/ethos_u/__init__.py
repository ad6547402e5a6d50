"""Arm Ethos-U backend: capability table, partition, Vela compile and report."""
