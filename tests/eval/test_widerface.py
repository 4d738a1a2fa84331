"""WIDER FACE protocol: the fast evaluator against hand-computed APs and a slow literal reference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from leanface.cli import main
from leanface.errors import LeanfaceError
from leanface.data import SETTINGS, WiderGroundTruth, load_ground_truth, present_images
from leanface.eval import evaluate, evaluate_detector, evaluate_folder, read_prediction_file, write_prediction_file

WIDER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "widerface"


# --- an independent, deliberately literal reference ---------------------------------------------
def _ref_iou(p, g):
    """Official convention on x, y, w, h boxes: x2 = x + w, and a box covers x1..x2 inclusive."""
    px2, py2, gx2, gy2 = p[0] + p[2], p[1] + p[3], g[0] + g[2], g[1] + g[3]
    iw = min(px2, gx2) - max(p[0], g[0]) + 1
    ih = min(py2, gy2) - max(p[1], g[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((gx2 - g[0] + 1) * (gy2 - g[1] + 1) + (px2 - p[0] + 1) * (py2 - p[1] + 1) - inter)


def reference_ap(images, thresh_num=1000):
    """images: list of (gt boxes, keep flags, predictions [x, y, w, h, score] in file order).

    Per prediction, per threshold Python loops, as the official MATLAB code is written.
    """
    scores = [p[4] for _, _, preds in images for p in preds]
    lo, hi = min(scores), max(scores)
    faces = sum(sum(bool(k) for k in keep) for _, keep, _ in images)
    proposals, true_pos = [0] * thresh_num, [0] * thresh_num
    for gt, keep, preds in images:
        if len(gt) == 0 or len(preds) == 0:
            continue
        norm = [(p[4] - lo) / (hi - lo) for p in preds]
        state = [0] * len(gt)  # 0 unmatched, 1 recalled, -1 hit while ignored
        counts = [True] * len(preds)
        recalled_upto = []
        for h, p in enumerate(preds):
            ious = [_ref_iou(p, g) for g in gt]
            best = 0
            for j in range(1, len(gt)):
                if ious[j] > ious[best]:
                    best = j
            if ious[best] >= 0.5:
                if not keep[best]:
                    state[best] = -1
                    counts[h] = False
                elif state[best] == 0:
                    state[best] = 1
            recalled_upto.append(state.count(1))
        for t in range(thresh_num):
            thr = 1 - (t + 1) / thresh_num
            above = [h for h in range(len(preds)) if norm[h] >= thr]
            if above:
                last = above[-1]
                proposals[t] += sum(counts[: last + 1])
                true_pos[t] += recalled_upto[last]
    precision = [tp / n if n else 0.0 for tp, n in zip(true_pos, proposals)]
    recall = [tp / faces for tp in true_pos]
    mrec, mpre = [0.0] + recall + [1.0], [0.0] + precision + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def make_gt(images) -> WiderGroundTruth:
    """images: list of (boxes, {setting: keep flags}) -> ground truth with keys ('ev', 'img<i>')."""
    return WiderGroundTruth(
        keys=tuple(("ev", f"img{i}") for i in range(len(images))),
        boxes=tuple(np.asarray(b, np.float64).reshape(-1, 4) for b, _ in images),
        keep={s: tuple(np.asarray(k[s], bool) for _, k in images) for s in SETTINGS},
    )


def fast_aps(gt_images, preds):
    gt = make_gt(gt_images)
    rows = {("ev", f"img{i}"): np.asarray(p, np.float64).reshape(-1, 5) for i, p in enumerate(preds)}
    return evaluate(gt, rows).aps


def ref_aps(gt_images, preds):
    return {s: reference_ap([(b, k[s], p) for (b, k), p in zip(gt_images, preds)]) for s in SETTINGS}


# --- hand-made cases ---------------------------------------------------------------------------
A, B, C, D, E = [0, 0, 10, 10], [100, 0, 10, 10], [200, 0, 10, 10], [0, 0, 20, 20], [50, 50, 30, 30]
FP1, FP2 = [300, 300, 10, 10], [400, 400, 12, 12]

# Image 0: faces A, B, C; image 1: face D. Easy counts A, D; medium A, B, C, D; hard A, B, D.
CASE1_GT = [([A, B, C], {"easy": [1, 0, 0], "medium": [1, 1, 1], "hard": [1, 1, 0]}),
            ([D], {"easy": [1], "medium": [1], "hard": [1]})]
# Scores already span [0, 1], so normalisation leaves them alone. A is detected twice (tie at 0.8).
CASE1_PRED = [[C + [1.0], A + [0.8], A + [0.8], B + [0.2]],
              [FP1 + [0.9], D + [0.5], FP2 + [0.0]]]


def test_hand_case_ignored_duplicates_ties():
    # Cumulative (proposals, true positives) by score: hard (A, B, D count; C ignored):
    #   1.0 C->ignored (0,0); 0.9 FP (1,0); 0.8 A + dup (3,1); 0.5 D (4,2); 0.2 B (5,3); 0.0 FP (6,3)
    #   P/R: 0/0, 1/3 @ 1/3, 1/2 @ 2/3, 3/5 @ 1, 1/2 @ 1 -> envelope 3/5 everywhere -> AP = 0.6
    # easy (A, D count; B, C ignored): (0,0) (1,0) (3,1) (4,2) B ignored (4,2) (5,2)
    #   P/R: 1/3 @ 1/2, 1/2 @ 1, 2/5 @ 1 -> AP = 1/2 * 1/2 + 1/2 * 1/2 = 0.5
    # medium (all count): (1,1) (2,1) (4,2) (5,3) (6,4) (7,4)
    #   P/R: 1 @ 1/4, 1/2 @ 1/4, 1/2 @ 1/2, 3/5 @ 3/4, 2/3 @ 1 -> AP = 1/4 + 3/4 * 2/3 = 0.75
    fast = fast_aps(CASE1_GT, CASE1_PRED)
    assert fast == pytest.approx({"easy": 0.5, "medium": 0.75, "hard": 0.6}, abs=1e-12)
    assert fast == pytest.approx(ref_aps(CASE1_GT, CASE1_PRED), abs=1e-12)


def test_hand_case_empty_images():
    # Image 2 has face E and no detections: E still counts (hard: 4 faces). Image 3 has no faces:
    # the official code skips it, so its 0.95 detection is not a false positive.
    # hard P/R: 1/3 @ 1/4, 1/2 @ 2/4, 3/5 @ 3/4, 1/2 @ 3/4 -> AP = 3/4 * 3/5 = 0.45
    gt = CASE1_GT + [([E], {"easy": [1], "medium": [1], "hard": [1]}), ([], {"easy": [], "medium": [], "hard": []})]
    preds = CASE1_PRED + [[], [FP1 + [0.95]]]
    fast = fast_aps(gt, preds)
    assert fast["hard"] == pytest.approx(0.45, abs=1e-12)
    assert fast == pytest.approx(ref_aps(gt, preds), abs=1e-12)


def test_thresholds_and_normalisation():
    gt = [([A, B], {s: [1, 1] for s in SETTINGS})]
    # A hit at 1.0 and a false positive at 0.9995 share the first threshold (0.999): P/R 1/2 @ 1/2,
    # then B at 0.0: 2/3 @ 1 -> AP = 2/3 (ranking each detection alone would give 5/6).
    binned = [[A + [1.0], FP1 + [0.9995], B + [0.0]]]
    assert fast_aps(gt, binned)["hard"] == pytest.approx(2 / 3, abs=1e-12)
    # Raw scores 0.5003 / 0.5002 / 0.5001 all fall between thresholds 0.500 and 0.501; only the
    # normalisation to 1 / 0.5 / 0 separates them: P/R 1 @ 1/2, 1/2 @ 1/2, 2/3 @ 1 -> AP = 5/6.
    narrow = [[A + [0.5003], FP1 + [0.5002], B + [0.5001]]]
    assert fast_aps(gt, narrow)["hard"] == pytest.approx(5 / 6, abs=1e-12)
    # File order is honoured as in the official code: an unsorted file counts everything up to the
    # last detection above a threshold. Scores 0.1, 0.9, 0.5 -> 0, 1, 0.5 after normalisation;
    # at 0.999 the FP and A count (P/R 1/2 @ 1/2), at 0.5 all (2/3 @ 1) -> AP = 2/3 (sorted: 1.0).
    unsorted = [[FP1 + [0.1], A + [0.9], B + [0.5]]]
    assert fast_aps(gt, unsorted)["hard"] == pytest.approx(2 / 3, abs=1e-12)
    for preds in (binned, narrow, unsorted):
        assert fast_aps(gt, preds) == pytest.approx(ref_aps(gt, preds), abs=1e-12)


def test_equal_iou_goes_to_first_face():
    # Two identical faces; a detection on them matches the first (as max() in the official code).
    ignored_first = [([A, A], {s: [0, 1] for s in SETTINGS})]
    counted_first = [([A, A], {s: [1, 0] for s in SETTINGS})]
    preds = [[A + [0.9], FP1 + [0.1]]]
    assert fast_aps(ignored_first, preds)["hard"] == 0.0
    assert fast_aps(counted_first, preds)["hard"] == pytest.approx(1.0)
    assert fast_aps(ignored_first, preds) == pytest.approx(ref_aps(ignored_first, preds), abs=1e-12)


def test_degenerate_boxes():
    # Zero-size faces (as in WIDER's invalid annotations) cover one pixel; negative-size detections
    # overlap nothing. P/R: A hit 1 @ 1/3, zero-size face hit 1 @ 2/3, then the bad box -> AP 2/3.
    gt = [([A, [40, 40, 0, 0], B], {s: [1, 1, 1] for s in SETTINGS})]
    preds = [[A + [0.9], [40, 40, 0, 0, 0.8], [60, 60, -2, 0, 0.1]]]  # area -1: union with the 1-pixel face is 0
    assert fast_aps(gt, preds)["hard"] == pytest.approx(2 / 3, abs=1e-12)
    assert fast_aps(gt, preds) == pytest.approx(ref_aps(gt, preds), abs=1e-12)


def test_no_predictions_at_all():
    gt = make_gt([([A], {s: [1] for s in SETTINGS})])
    result = evaluate(gt, {})
    assert result.aps == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    assert result.settings["hard"].faces == 1 and result.predictions == 0


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_reference(seed):
    # Crowded integer boxes (IoU near and exactly at 0.5), coarse scores (many ties), some images
    # without faces or detections, shuffled files; each setting keeps a random subset of faces.
    rng = np.random.default_rng(seed)
    gt_images, preds = [], []
    for _ in range(12):
        n_gt = int(rng.integers(0, 8))
        boxes = np.c_[rng.integers(0, 60, (n_gt, 2)), rng.integers(4, 20, (n_gt, 2))].tolist()
        keep = {s: rng.random(n_gt) < 0.6 for s in SETTINGS}
        gt_images.append((boxes, keep))
        rows = []
        for b in boxes:
            for _ in range(int(rng.integers(0, 3))):
                rows.append([b[0] + int(rng.integers(-3, 4)), b[1] + int(rng.integers(-3, 4)), b[2], b[3]])
        n_fp = int(rng.integers(0, 4))
        rows += np.c_[rng.integers(0, 70, (n_fp, 2)), rng.integers(4, 20, (n_fp, 2))].tolist()
        scores = rng.integers(0, 12, len(rows)) / 11 * 0.7 + 0.2
        pred = [r + [float(s)] for r, s in zip(rows, scores)]
        if rng.random() < 0.7:
            pred.sort(key=lambda r: -r[4])
        else:
            rng.shuffle(pred)
        preds.append(pred)
    assert fast_aps(gt_images, preds) == pytest.approx(ref_aps(gt_images, preds), abs=1e-12)


# --- bad inputs --------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("body, where, what", [
    ("img\n2\n1 2 3 4 0.9\n1 2 3 4\n", ":4:", "five numbers"),
    ("img\n1\n1 2 3 4 abc\n", ":3:", "five numbers"),
    ("img\n1\n1 2 3 4 nan\n", ":3:", "five numbers"),
    ("img\n1\n1 2 3 4 0.5 0.7\n", ":3:", "five numbers"),
    ("img\n3\n1 2 3 4 0.9\n", ":2:", "says 3 boxes"),
    ("img\nmany\n", ":2:", "number of boxes"),
    ("other_image\n0\n", ":1:", "names image"),
    ("img\n", "img.txt:", "line 2"),
])
def test_bad_prediction_file(tmp_path, body, where, what):
    path = _write(tmp_path / "ev" / "img.txt", body)
    with pytest.raises(LeanfaceError) as err:
        read_prediction_file(path)
    msg = str(err.value)
    assert str(path) in msg and where in msg and what in msg and "\n" not in msg


def test_good_prediction_file_roundtrip(tmp_path):
    path = tmp_path / "ev" / "img.txt"
    write_prediction_file(path, "img", np.array([[1, 2, 11, 22], [5, 5, 9, 9.5]]), np.array([0.25, 0.75]))
    name, boxes = read_prediction_file(path)
    assert name == "img"
    # Highest score first, x y w h with w = x2 - x1.
    np.testing.assert_allclose(boxes, [[5, 5, 4, 4.5, 0.75], [1, 2, 10, 20, 0.25]])
    assert path.read_text().splitlines()[:2] == ["img", "2"]
    # Windows line ends, a trailing blank line and an "event/name.jpg" header are all accepted.
    _write(path, "ev/img.jpg\r\n1\r\n1 2 3 4 0.5\r\n\r\n")
    np.testing.assert_allclose(read_prediction_file(path)[1], [[1, 2, 3, 4, 0.5]])


def _fake_wider(root: Path, images=("0--Parade/0_Parade_a",)) -> Path:
    """A WIDER-layout folder with the given images (one-pixel jpgs) and ground-truth .mat files."""
    import cv2
    import scipy.io

    names = sorted(images)
    events = sorted({n.split("/")[0] for n in names})
    for n in names:
        (root / "WIDER_val" / "images" / n).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "WIDER_val" / "images" / f"{n}.jpg"), np.zeros((8, 8, 3), np.uint8))

    def cells(items):
        out = np.empty((len(items), 1), dtype=object)
        for i, item in enumerate(items):
            out[i, 0] = item
        return out

    per_event = [[n.split("/")[1] for n in names if n.startswith(e + "/")] for e in events]
    face = {"event_list": cells([np.array([e]) for e in events]),
            "file_list": cells([cells([np.array([f]) for f in fs]) for fs in per_event]),
            "face_bbx_list": cells([cells([np.array([[0, 0, 4, 4]], np.int32) for _ in fs]) for fs in per_event])}
    gt = root / "ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(gt / "wider_face_val.mat", face)
    for s in SETTINGS:
        keep = cells([cells([np.array([[1]], np.uint8) for _ in fs]) for fs in per_event])
        scipy.io.savemat(gt / f"wider_{s}_val.mat", {**face, "gt_list": keep})
    return root


def test_small_wider_folder_roundtrip(tmp_path):
    data = _fake_wider(tmp_path / "wider", ("0--Parade/0_Parade_a", "0--Parade/0_Parade_b", "1--Hand/1_Hand_c"))
    gt = load_ground_truth(data)
    assert gt.keys == (("0--Parade", "0_Parade_a"), ("0--Parade", "0_Parade_b"), ("1--Hand", "1_Hand_c"))
    preds = tmp_path / "preds"
    write_prediction_file(preds / "0--Parade" / "0_Parade_a.txt", "0_Parade_a", np.array([[0, 0, 4, 4]]), [0.9])
    write_prediction_file(preds / "1--Hand" / "1_Hand_c.txt", "1_Hand_c", np.array([[9, 9, 12, 12]]), [0.3])
    write_prediction_file(preds / "9--Other" / "9_x.txt", "9_x", np.zeros((0, 4)), [])
    ev = evaluate_folder(preds, data)
    # 3 faces; the one hit ranks first: P/R 1 @ 1/3 -> AP 1/3. Missing and extra files are reported.
    assert ev.result.aps["hard"] == pytest.approx(1 / 3)
    assert (ev.result.images, ev.result.events) == (3, 2)
    assert ev.missing == ("0--Parade/0_Parade_b",) and ev.extra == ("9--Other/9_x",)


def test_wrong_mat_files(tmp_path):
    import scipy.io

    data = _fake_wider(tmp_path / "wider")
    hard = data / "ground_truth" / "wider_hard_val.mat"
    scipy.io.savemat(hard, {"something": np.arange(3)})
    with pytest.raises(LeanfaceError, match=r"wider_hard_val\.mat: not a WIDER FACE ground-truth file"):
        load_ground_truth(data)
    hard.write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(LeanfaceError, match=r"wider_hard_val\.mat: not a readable MATLAB \.mat file"):
        load_ground_truth(data)
    with pytest.raises(LeanfaceError, match="no WIDER FACE ground truth"):
        load_ground_truth(tmp_path)


def test_no_images_and_no_matching_predictions(tmp_path, capsys):
    data = _fake_wider(tmp_path / "wider")
    preds = tmp_path / "preds"
    _write(preds / "0--Parade" / "unrelated.txt", "unrelated\n0\n")
    with pytest.raises(LeanfaceError, match=r"preds: no prediction file matches any of the 1 validation images"):
        evaluate_folder(preds, data)
    (data / "WIDER_val" / "images" / "0--Parade" / "0_Parade_a.jpg").unlink()
    with pytest.raises(LeanfaceError, match=r"images: no validation images"):
        evaluate_folder(preds, data)
    # The CLI turns it into one line on stderr and exit status 2.
    assert main(["eval", "--preds", str(preds), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leanface eval: error:") and "\n" not in err


# --- the real WIDER FACE subset ----------------------------------------------------------------
@pytest.fixture(scope="session")
def wider_gt():
    if not (WIDER / "ground_truth" / "wider_hard_val.mat").is_file():
        pytest.skip(f"{WIDER}: WIDER FACE data not available")
    return load_ground_truth(WIDER)


@pytest.fixture(scope="session")
def present(wider_gt):
    return [k for k, _ in present_images(wider_gt, WIDER)]


def test_official_ground_truth(wider_gt, present):
    # The official validation set: 3,226 images in 61 events; ignored faces are excluded per setting.
    assert len(wider_gt.keys) == 3226 and wider_gt.events == 61
    assert sum(len(b) for b in wider_gt.boxes) == 39708
    assert wider_gt.faces("easy") < wider_gt.faces("medium") < wider_gt.faces("hard") <= 39708
    on_disk = sorted((p.parent.name, p.stem) for p in (WIDER / "WIDER_val" / "images").glob("*/*.jpg"))
    assert sorted(present) == on_disk


def _gt_predictions(gt, shift=0.0, seed=0):
    """A 'detector' that outputs every annotated face (shifted by `shift` box sizes), random scores."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, b in zip(gt.keys, gt.boxes):
        xy = b[:, :2] + shift * b[:, 2:]
        out[key] = np.c_[xy, b[:, 2:], rng.uniform(0.3, 1.0, len(b))]
    return out


def test_perfect_and_shifted_detector_on_subset(wider_gt, present, tmp_path, capsys):
    sub = wider_gt.subset(present)
    perfect = tmp_path / "perfect"
    for (event, name), rows in _gt_predictions(sub).items():
        x, y, w, h, s = rows.T
        write_prediction_file(perfect / event / f"{name}.txt", name, np.c_[x, y, x + w, y + h], s)
    assert main(["eval", "--preds", str(perfect), "--data", str(WIDER), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {s: record[s] for s in SETTINGS} == pytest.approx({s: 1.0 for s in SETTINGS}, abs=1e-9)
    assert record["images"] == len(present) and record["subset"] is True
    assert record["faces"] == {s: sub.faces(s) for s in SETTINGS}
    assert (perfect / "widerface_eval.json").is_file() and (perfect / "widerface_pr.png").stat().st_size > 1000

    # Moved diagonally by 1.5 box sizes, no box overlaps its own face; AP collapses.
    shifted = evaluate(sub, _gt_predictions(sub, shift=1.5)).aps
    assert max(shifted.values()) < 0.01


def test_real_boxes_match_reference(wider_gt, present):
    # Jittered annotations plus false positives on 15 real images of 10-60 faces, literal reference alongside.
    rng = np.random.default_rng(1)
    counts = dict(zip(wider_gt.keys, map(len, wider_gt.boxes)))
    keys = [k for k in present if 10 <= counts[k] <= 60][:15]
    sub = wider_gt.subset(keys)
    preds = {}
    for key, b in zip(sub.keys, sub.boxes):
        jit = b + rng.normal(0, 0.15, b.shape) * np.c_[b[:, 2:], b[:, 2:]]
        fp = np.c_[rng.uniform(0, 900, (20, 2)), rng.uniform(4, 60, (20, 2))]
        rows = np.r_[np.c_[jit, rng.uniform(0.2, 1, len(b))], np.c_[fp, rng.uniform(0, 0.6, 20)]]
        preds[key] = rows[np.argsort(-rows[:, 4])]
    fast = evaluate(sub, preds).aps
    ref = {s: reference_ap([(b, k, preds[key]) for key, b, k in zip(sub.keys, sub.boxes, sub.keep[s])])
           for s in SETTINGS}
    assert fast == pytest.approx(ref, abs=1e-12)
    assert 0.2 < fast["hard"] < 0.95


def test_detector_runner_with_fake_detector(wider_gt, present, tmp_path):
    # Fake reader/detector pair: the "image" carries its index, the detector answers with its annotations.
    sub = wider_gt.subset(present[:20])
    paths = dict(present_images(wider_gt, WIDER))
    index = {paths[k]: i for i, k in enumerate(sub.keys)}

    class Faces:
        def __init__(self, b):
            self.boxes = np.c_[b[:, :2], b[:, :2] + b[:, 2:]].astype(np.float32).reshape(-1, 4)
            self.scores = np.linspace(1.0, 0.5, len(b)).astype(np.float32)

    calls = []

    def detector(images):
        calls.append(len(images))
        found = [int(im[0, 0, 0]) for im in images]
        return [Faces(sub.boxes[i] if i < len(sub.keys) else np.zeros((0, 4))) for i in found]

    evaluation, timings = evaluate_detector(detector, WIDER, tmp_path / "out", batch_size=7, progress=False,
                                            read_image=lambda p: np.full((2, 2, 3), index.get(p, 255), np.uint8),
                                            ground_truth=wider_gt)
    # All present images are run (in batches of 7); only the 20 known ones get (their) faces.
    assert sum(calls) == len(present) and max(calls) == 7
    assert len(list((tmp_path / "out").glob("*/*.txt"))) == len(present)
    assert evaluation.result.images == len(present) and not evaluation.missing
    assert timings["detector_seconds"] >= 0
    easy = evaluation.result.settings["easy"]
    assert easy.recall.max() == pytest.approx(sub.faces("easy") / wider_gt.subset(present).faces("easy"))
