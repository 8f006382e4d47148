"""The restore rehearsal's inventory (make restore-rehearsal): the site's inventory
(HA_REHEARSAL_SITE, default inventories/lab.py) as it is, plus the group `rehearsal` made of
its backup_rehearsal_hosts ({name: address}), each reached at its address with the
controllers' ssh_* settings. Only rehearsal.py accepts that group: with any other entry
preflight refuses it (deploy.py would run on the rehearsal hosts too).
"""

import os as _os
import runpy as _runpy
import sys as _sys
from pathlib import Path as _Path

_ROOT = _Path(__file__).resolve().parent.parent
if str(_ROOT) not in _sys.path:
    _sys.path.insert(0, str(_ROOT))

from config.rehearsal import KEY as _KEY  # noqa: E402

_site = _os.environ.get("HA_REHEARSAL_SITE") or str(_ROOT / "inventories" / "lab.py")
if _Path(_site).resolve() == _Path(__file__).resolve():
    raise ValueError("HA_REHEARSAL_SITE names the rehearsal inventory itself: name the site's inventory")
controllers = _runpy.run_path(_site)["controllers"]
_group = controllers[1]
rehearsal = [
    (name, {"ssh_hostname": address, **{k: v for k, v in _group.items() if k.startswith("ssh_")}})
    for name, address in (_group.get(_KEY) or {}).items()
]
