"""The platform's command line: what `make train`, `make upload-data` and friends run.

grammar.py (what it takes), commands.py (the verbs), follow.py (a flow run's logs as they come),
summaries.py (the lines each verb ends with), here.py (training in this process).
"""

from __future__ import annotations
