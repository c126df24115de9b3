"""riskml.data.credit: the credit line's data layer.

``schema`` (the loans / performance / offers tables and their validators), ``economics`` (unit
economics of an instalment loan), ``simulator`` (a simulated portfolio: loans by vintage, monthly
repayment paths, logged offer impressions) and ``importer`` (real loan tapes). Import the modules
themselves; this package imports nothing at import time.
"""
