"""The bad-input cases of issue 12 as they behave now: each runs the `leanface` command in a fresh
process and the table shows its exit status, stderr's last line, whether a traceback appeared and
what survived. The same cases are asserted by tests/infer/test_bad_inputs.py and test_outputs.py;
this prints them for people.

    python bench/bad_inputs.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
from skimage import data

LEANFACE = [str(Path(sys.executable).parent / "leanface")]  # the installed command


def run(args: list[str], cwd: Path, shell_tail: str = "") -> tuple[int, str, bool]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if shell_tail:  # e.g. a pipe into `head`
        cmd = " ".join(LEANFACE + args) + shell_tail
        p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True)
    else:
        p = subprocess.run(LEANFACE + args, cwd=cwd, env=env, capture_output=True, text=True)
    err = [line.strip() for line in p.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in err if "error" in line.lower()] or err  # not the progress bar
    shown = " / ".join(dict.fromkeys([errors[0], err[-1]])) if err else ""  # the first error and the summary
    return p.returncode, shown, "Traceback" in p.stderr


def records(path: Path) -> str:
    if not path.exists():
        return "no file"
    lines = path.read_text().splitlines()
    return f"{len(lines)} record(s): " + ", ".join(Path(json.loads(line)["image"]).name for line in lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cv2.imwrite(str(d / "good.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        (d / "fake.mp4").write_text("not a video")
        (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
        (d / "weights.pt").write_text("not weights")
        (d / "faces.jsonl").write_text('{"image": "good.jpg", "faces": [{"box": [1, 2, 3]}]}\n')
        (d / "old.jsonl").write_text('{"image": "kept.jpg", "faces": []}\n')
        (d / "run").mkdir()
        (d / "run" / "last.pt").write_text("a previous run")
        cases = [
            ("missing image among good ones", ["detect", "good.jpg", "nosuch.jpg", "--json-out", "a.jsonl"], "a.jsonl"),
            ("text file named .mp4", ["detect", "good.jpg", "fake.mp4", "--json-out", "b.jsonl"], "b.jsonl"),
            ("corrupt JPEG", ["detect", "good.jpg", "broken.jpg", "--json-out", "c.jsonl"], "c.jsonl"),
            ("missing video", ["detect", "nosuch.mp4"], None),
            ("--size -5", ["detect", "good.jpg", "--size", "-5"], None),
            ("--threads -2", ["detect", "good.jpg", "--threads", "-2"], None),
            ("--max-faces -1", ["detect", "good.jpg", "--max-faces", "-1"], None),
            ("--score-thr 2", ["detect", "good.jpg", "--score-thr", "2"], None),
            ("--batch-size 0", ["detect", "good.jpg", "--batch-size", "0"], None),
            ("weights that are not weights", ["detect", "good.jpg", "--weights", "weights.pt"], None),
            ("--save-dir over the inputs", ["detect", "good.jpg", "--save-dir", "."], None),
            ("existing --json-out", ["detect", "good.jpg", "--json-out", "old.jsonl"], "old.jsonl"),
            ("--resume without --json-out", ["detect", "good.jpg", "--resume"], None),
            ("unwritable --json-out", ["detect", "good.jpg", "--json-out", "/proc/leanface.jsonl"], None),
            ("malformed annotation line", ["train", "--model", "scrfd_500m_kps", "--data", "faces.jsonl",
                                           "--out-dir", "run2", "--epochs", "1"], None),
            ("existing run folder", ["train", "--model", "scrfd_500m_kps", "--data", "faces.jsonl",
                                     "--out-dir", "run", "--epochs", "1"], None),
            ("search run --dry-run without --data", ["search", "run", "s", "--dry-run"], None),
        ]
        print("| case | command | exit | traceback | stderr (first / last line) | kept |")
        print("|---|---|---|---|---|---|")
        for name, args, out in cases:
            code, line, tb = run(args, d)
            kept = records(d / out) if out else ""
            print(f"| {name} | `leanface {' '.join(args)}` | {code} | {'yes' if tb else 'no'} | {line} | {kept} |")
        code, line, tb = run(["info"], d, " | head -1 > /dev/null")
        print(f"| `info` piped into `head -1` | `leanface info \\| head -1` | {code} | {'yes' if tb else 'no'} | {line} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
