"""Tracing NumPyro programs from shapes."""
from amortize.program.trace import ProgramTrace, SiteTrace, trace_program

__all__ = ["ProgramTrace", "SiteTrace", "trace_program"]
