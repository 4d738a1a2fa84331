"""The search on a real (local) Ray Tune: a killed search resumes without redoing finished trials; ASHA.

Each search runs in its own Python process (Ray is started and killed with it) with a trivial
trial function defined in that process, so the tests take seconds rather than training models.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("ray.tune", reason="ray[tune] is not installed (pip install 'leanface[search]')")

from leanface.search import collect_trials  # noqa: E402

DRIVER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from leanface.search import SearchSettings, TrialSettings, run_search

    run, log, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def trial(cfg, settings, out):
        """hard AP = epoch / 10 + a per-candidate score; the candidate named *_001 blocks until released."""
        with open(log, "a") as f:
            f.write(cfg.name + "\\n")
        (Path(out) / "note.txt").write_text(cfg.name)
        index = int(cfg.name.rsplit("_", 1)[1])
        if mode == "new" and index == 1:
            deadline = time.time() + 120
            while not Path(str(log) + ".release").exists() and time.time() < deadline:
                time.sleep(0.2)
        score = -index / 100 if mode == "asha" else index / 100
        for epoch in range(1, settings.epochs + 1):
            yield {"epoch": epoch, "hard": epoch / 10 + score, "easy": 0.5, "medium": 0.4, "loss": 1.0}

    trial_settings = TrialSettings(data=sys.argv[4], report_every=1 if mode == "asha" else 0).with_train(epochs=2)
    settings = SearchSettings(step=1, gflops=0.5, num_samples=2, trial=trial_settings,
                              asha=mode == "asha", max_concurrent=1 if mode == "asha" else 0)
    run_search(run, None if mode == "resume" else settings, resume=mode == "resume", trial_fn=trial)
''')


@pytest.fixture
def driver(tmp_path):
    """Start a search process: driver(mode) -> Popen in its own process group (killable with Ray inside)."""
    data = tmp_path / "wider"
    (data / "WIDER_val").mkdir(parents=True)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    # Save Tune's experiment state at every step (default: every 10 s) so a kill right after a
    # trial finishes is the worst case the resume must handle.
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    procs = []

    def start(mode: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), str(tmp_path / "calls.log"), mode,
                              str(data)], env=env, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _finish(p: subprocess.Popen, timeout: float = 180) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return err


@pytest.mark.parametrize("tune_state", ["saved", "lost"])
def test_killed_search_resumes_without_redoing_finished_trials(driver, tmp_path, tune_state):
    """"lost": the kill came before Tune wrote its experiment state (seen on a loaded CI machine); Tune's
    restore then silently starts a new experiment, which must still skip the finished trial."""
    run, log = tmp_path / "run", tmp_path / "calls.log"
    first = driver("new")
    deadline = time.time() + 180  # Ray starts slowly on a loaded machine
    while True:
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.time() < deadline, "trial 0 did not finish within 180 s"
        # search.json is written last: its presence means the run folder is complete.
        if (run / "search.json").is_file() and collect_trials(run)[0].status == "complete":
            break
        time.sleep(0.2)
    time.sleep(2)  # let the controller step again (and save its state) after the result arrived
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its Ray processes, mid-trial 1
    first.wait()
    records = collect_trials(run)
    assert [r.status for r in records] == ["complete", "pending"]
    if tune_state == "lost":
        for state in [*(run / "tune").glob("experiment_state-*.json"), *(run / "tune").glob("basic-variant-state-*")]:
            state.unlink()

    (tmp_path / "calls.log.release").touch()
    err = _finish(driver("resume"))
    assert "failed 0" in err  # the progress display
    records = collect_trials(run)
    assert [r.status for r in records] == ["complete", "complete"]
    assert [r.metrics["hard"] for r in records] == pytest.approx([0.2, 0.21])
    calls = log.read_text().split()
    assert calls.count("run_s1_000") == 1  # finished before the kill: not run again
    assert calls.count("run_s1_001") == 2  # cut off by the kill: run again from the start
    assert (run / "tune" / "trial_001" / "note.txt").read_text() == "run_s1_001"  # trial outputs kept


def test_asha_stops_weak_trials(driver, tmp_path):
    _finish(driver("asha"))
    records = collect_trials(tmp_path / "run")
    # One trial at a time, the second scoring lower: it falls below the first rung's cutoff (ASHA,
    # reduction factor 2: the median of the results recorded there) and stops after 1 of 2 evaluations.
    assert [r.status for r in records] == ["complete", "stopped"]
    assert [r.reports for r in records] == [2, 1]
