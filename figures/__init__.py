"""Committed figures and the summary tables they are drawn from (``python -m figures``)."""
