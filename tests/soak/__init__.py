"""The fault soak (issue 21): history.py (the record format and the recorder the workload
clients write through), workloads.py (the clients), checker.py (the pure checker), and
`python -m tests.soak check HISTORY.jsonl` to check a saved history again."""
