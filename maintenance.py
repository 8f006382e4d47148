"""pyinfra entry: take one controller out for maintenance, or bring it back.

    pyinfra -y inventories/prod.py maintenance.py --data node=node02 --data action=out
    pyinfra -y inventories/prod.py maintenance.py --data node=node02 --data action=back
    make maintenance-out NODE=node02 INVENTORY=inventories/prod.py     (the same, preflight first)

Reads every controller first and refuses (nothing changed) with a partial picture, a node not
in the inventory, or when the rest would be fewer than a majority of Galera or RabbitMQ
members serving. Re-running converges. See operations/maintenance.py and docs/operations.md "Maintenance".
"""

from operations import common
from operations.maintenance import run

common.site()  # preflight; exits with one line per problem
run()
