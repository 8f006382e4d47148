"""pyinfra entry: take one MariaDB backup now, on the site's backup node.

    pyinfra -y inventories/prod.py backup.py                       (a full backup)
    pyinfra -y inventories/prod.py backup.py --data kind=incremental
    make backup [KIND=incremental] INVENTORY=inventories/prod.py   (the same, preflight first)

Reads every controller first and refuses (nothing changed) unless every member is Synced in one
Primary component, the backup node is not the writer nor in maintenance, and its directory has
room. See operations/backup.py and docs/operations.md "Backups".
"""

from operations import common
from operations.backup import run

common.site()  # preflight; exits with one line per problem
run()
