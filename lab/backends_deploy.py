"""pyinfra deploy (LAB ONLY): the API stand-ins of lab/backends.py on every lab node.

    pyinfra -y inventories/lab.py lab/backends_deploy.py

One systemd unit, lab-responder: python3 (on every node) serving every enabled API port of
the catalogue with the node's name, bound to the node's address. Idempotent: a re-run
changes nothing; the unit restarts only when its script, config or unit file changed.
"""

import json
import sys
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, systemd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab.backends import CONFIG, SCRIPT, UNIT, api_ports  # noqa: E402
from operations.common import site  # noqa: E402  (runs preflight, as deploy.py does)

s = site()
me = s.controller(host.name)
config = {"name": me.name, "address": me.address, "ports": sorted(api_ports(s).values())}

UNIT_TEXT = f"""# Lab only (lab/backends_deploy.py): stand-ins for the OpenStack APIs.
[Unit]
Description=Lab API stand-ins: answer with the node name on every API port
After=network.target

[Service]
ExecStart=/usr/bin/python3 {SCRIPT} {CONFIG}
RuntimeDirectory={UNIT}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""

script = files.put(name="lab backends: responder script", src=str(ROOT / "lab" / "responder.py"),
                   dest=SCRIPT, mode="755")
conf = files.put(name="lab backends: ports", src=StringIO(json.dumps(config, indent=1) + "\n"),
                 dest=CONFIG, mode="644")
unit = files.put(name="lab backends: unit", src=StringIO(UNIT_TEXT),
                 dest=f"/etc/systemd/system/{UNIT}.service", mode="644")
changed = [script, conf, unit]
systemd.service(
    name="lab backends: restart after a change", service=f"{UNIT}.service",
    running=True, restarted=True, enabled=True, daemon_reload=True,
    _if=lambda: any(op.did_change() for op in changed),
)
systemd.service(name="lab backends: running", service=f"{UNIT}.service", running=True, enabled=True)
