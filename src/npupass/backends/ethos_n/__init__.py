"""Arm Ethos-N78 backend: capability checker, legalizing passes, partition and report."""

from npupass.backends.ethos_n import legalize  # noqa: F401 - registers legalize-ethos-n
