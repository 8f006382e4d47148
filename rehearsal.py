"""pyinfra entry: the restore rehearsal, a backup restored as a Galera cluster of its own on the
hosts the site names for it (backup_rehearsal_hosts, never a controller) and compared with its
manifest, table by table. The controllers are only read (the backup's files).

    make restore-rehearsal [BACKUP=ID|latest] [FROM=node|copy] INVENTORY=inventories/lab.py
    HA_REHEARSAL_SITE=inventories/lab.py pyinfra -y inventories/rehearsal.py rehearsal.py --data backup=ID

inventories/rehearsal.py adds the rehearsal hosts to the site's inventory as the group
`rehearsal`, which only this entry accepts. Refused, nothing changed, for a rehearsal host that
is a controller, a changed artifact, a broken chain, a backup without galera-info or one that
failed its verification. A difference fails the run; the last line says how many tables and
rows were compared. See operations/rehearsal.py and docs/operations.md "Backups".
"""

from config.rehearsal import GROUP
from operations import common
from operations.rehearsal import run

common.allow_group(GROUP)
common.site()  # preflight; exits with one line per problem
run()
