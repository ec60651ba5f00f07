"""Benchmarks: measured speed (`speed`), HumanEval+ quality (`humaneval`), published scores
(`references`), every result kept in a SQLite store (`store`) and a report (`report`).

Only `store` is imported by the daemon (GET /models shows the latest measured speed), so
it must stay light; evalplus and matplotlib load only inside the commands that need them.
"""
