"""Files in and out, shared by every stage: data sets (:mod:`.datasets`), atomic writes
(:mod:`.atomic`) and figure saving (:mod:`.plotting`).

Imports nothing of the package but :mod:`xbarsim.errors`.
"""
