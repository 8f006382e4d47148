"""pyinfra entry: verification of the HA layer alone; changes nothing.

    pyinfra -y inventories/lab.py verify.py
    HA_VERIFY_JSON=/var/tmp/health.json pyinfra -y inventories/lab.py verify.py

Reads every controller's health facts (VIP, HAProxy and its backends, the VIP's certificate,
Galera, RabbitMQ, memcached), prints a table per host and fails the run, with the reason, on
any failed check (a certificate near its expiry is a warning).
With HA_VERIFY_JSON set, the report is also written there as JSON for monitoring.
See operations/verify.py.
"""

from operations.verify import verify

verify()
