"""The comparison report: every finished run beside the papers' figures (docs/reporting.md).

Domain code only (no Kedro): :mod:`.results` reads the results tree, :mod:`.leaderboard` ranks the
rows per data set and protocol beside ``report.papers``, :mod:`.plots` draws, :mod:`.document`
renders Markdown and self-contained HTML, :mod:`.report` ties them together.
"""
