"""What the benchmarks record about the machine they ran on (the study report's own helper)."""

from regulab.studies.aggregate import cpu_name

__all__ = ["cpu_name"]
