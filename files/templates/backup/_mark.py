# The verify step's verdict written into a manifest atomically (a temporary file renamed over
# it): `verified`, `verify_note` and, when summed, `tables` (rendered from
# files/templates/backup/_mark.py).
#     python3 -c "$MARK_PY" MANIFEST true|false NOTE [SUMS]
import json
import os
import sys

path, verified, note = sys.argv[1:4]
with open(path) as f:
    m = json.load(f)
m["verified"] = verified == "true"
m["verify_note"] = note
if len(sys.argv) > 4 and sys.argv[4]:
    with open(sys.argv[4]) as f:
        m["tables"] = json.load(f)
part = path + ".part"
with open(part, "w") as f:
    json.dump(m, f, indent=1)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.replace(part, path)
