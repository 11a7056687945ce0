"""Experimenters' glue: logs (decision/join.py) -> OPE inputs -> estimates.

Everything here reads only the log records and the catalog file; the
estimators themselves live in bandits/ope.
"""


class ExperimentError(Exception):
    """Bad input for export/ope/report/promote: the message is shown to the
    user as is (`nba: <message>`, non-zero exit), never a traceback."""
