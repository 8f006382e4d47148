"""The site model: defaults, the OpenStack service catalogue, secrets, preflight and the
list of files each controller gets. Pure Python: no SSH, testable offline in milliseconds.
"""
