"""Errors npupass reports to users as one line (the CLI exits with code 2)."""


class NpupassError(Exception):
    """Base class of every error npupass reports as a clean one-line message."""


class ModelFormatError(NpupassError):
    """The input file is not a valid model of the format it claims to be."""


class UnsupportedFeatureError(NpupassError):
    """The model uses a feature of its format that npupass does not handle."""


class IRCheckError(NpupassError):
    """The IR violates a structural invariant; `problems` lists every violation found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")
