"""Reporting: the report stage's self-contained report.html."""
