"""pyinfra entry: the disaster restore, the cluster's data replaced by a backup (the data of
before set aside on every controller, never deleted).

    pyinfra -y inventories/prod.py restore.py --data backup=ID --data confirm=ID
    pyinfra -y inventories/prod.py restore.py --data backup=latest --data confirm=ID

Refused, nothing changed, while any controller's mariadb runs (stop mariadb on every controller
first), without a confirmation naming the backup restored, for a changed artifact (sha256), a
broken incremental chain, a backup of another cluster or without galera-info. Then the backup
is restored on the backup node and bootstrapped, the others join by SST one at a time. See
operations/restore.py and docs/operations.md "Backups".
"""

from operations import common
from operations.restore import run

common.site()  # preflight; exits with one line per problem
run()
