"""Arm Ethos-N78 backend: capability checker, legalizing passes, partition and report."""
