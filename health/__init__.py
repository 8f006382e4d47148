"""The health model of the HA layer: each controller's verification facts in, the report's
rows out. Pure (no pyinfra here: operations/verify.py reads the facts and publishes).

report.py   Check (a row), Report (rows per host and for the cluster), text and JSON
checks.py   one rule per check (vip, keepalived, galera, rabbitmq, memcached, the cluster
            rows) and evaluate(), which composes them
haproxy.py  HAProxy's rows: alive, each listener's servers
tls.py      the VIP's certificate: WARN near its expiry, FAIL expired or unreadable
settle.py   which HAProxy servers are about to change state (verify's settle loop)
"""
