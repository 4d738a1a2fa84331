"""The output-guard and up-front-check cases of issue 32 as they behave now: each runs the `leanface`
command in a fresh process, in a folder of copies, and the table shows its exit status, the error line,
whether a traceback appeared and whether every file of the folder is unchanged (md5). The same cases are
asserted by tests/test_output_guard.py (the table lives there); this prints them for people.

    python bench/output_guard.py            # needs ../shared (WIDER val images, the official 0.5 GF ONNX)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import WIDER  # noqa: E402
from tests.test_output_guard import REFUSED, _snapshot, make_workspace  # noqa: E402

LEANFACE = str(Path(sys.executable).parent / "leanface")


def main() -> int:
    val_images = sorted((WIDER / "WIDER_val" / "images").rglob("*.jpg"))
    if not val_images:
        print(f"{WIDER}: WIDER val images not found", file=sys.stderr)
        return 2
    rows, bad = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp), val_images)
        for case, argv, message in REFUSED:
            before = _snapshot(ws)
            p = subprocess.run([LEANFACE, *argv], cwd=ws, capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
            errors = [line for line in p.stderr.splitlines() if "error:" in line]
            unchanged = _snapshot(ws) == before
            ok = p.returncode == 2 and len(errors) == 1 and message in errors[0] and unchanged \
                and "Traceback" not in p.stderr
            bad += not ok
            line = errors[0].split("error: ", 1)[-1].replace(str(ws), "<ws>") if errors else p.stderr.strip()[-80:]
            rows.append((case, " ".join(argv).replace(str(WIDER), "WIDER"), p.returncode,
                         "yes" if "Traceback" in p.stderr else "no", "yes" if unchanged else "NO", line))
    print("| case | command (`leanface ...`, in a folder of copies) | exit | traceback | files unchanged | error line |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |")
    print(f"\n{len(rows) - bad} of {len(rows)} cases as expected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
