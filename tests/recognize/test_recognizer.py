"""The Recognizer and identification on real LFW photos with OpenCV SFace as the oracle embedder."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from leanface import LeanfaceError
from leanface.infer import Faces
from leanface.recognize import UNKNOWN, Gallery, Identifier, build_gallery, primary_face


def _photos(lfw, name, k=None):
    files = sorted((lfw / name).glob("*.jpg"))
    return files if k is None else files[:k]


def test_faces_carry_unit_embeddings(sface_recognizer, lfw):
    faces = sface_recognizer(_photos(lfw, "George_W_Bush", 1)[0])
    assert isinstance(faces, Faces) and len(faces) >= 1
    assert faces.embeddings.shape == (len(faces), 128) and faces.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(faces.embeddings, axis=1), 1, atol=1e-5)
    first = faces[0]  # per-face records keep their embedding; slices keep the arrays aligned
    assert np.array_equal(first.embedding, faces.embeddings[0])
    assert np.array_equal(faces[:1].embeddings, faces.embeddings[:1])
    record = faces.to_dict()["faces"][0]
    assert len(record["embedding"]) == 128 and {"box", "score", "landmarks"} <= set(record)


def test_same_person_scores_above_different_people(sface_recognizer, lfw):
    bush, blair = _photos(lfw, "George_W_Bush", 3), _photos(lfw, "Tony_Blair", 2)
    same = [sface_recognizer.compare(bush[0], bush[1]), sface_recognizer.compare(bush[1], bush[2]),
            sface_recognizer.compare(blair[0], blair[1])]
    different = [sface_recognizer.compare(b, t) for b in bush[:2] for t in blair]
    assert min(same) > max(different)
    # SFace's published cosine threshold (OpenCV) is 0.363: our alignment must put pairs on the right side.
    assert min(same) > 0.363 > max(different)
    v = sface_recognizer.verify(bush[0], bush[1], threshold=0.363)
    assert v.same and v.threshold == 0.363
    assert not sface_recognizer.verify(bush[0], blair[0], threshold=0.363).same


def test_no_face_and_no_threshold_are_clear_errors(sface_recognizer, lfw, tmp_path):
    blank = np.full((200, 200, 3), 127, np.uint8)
    emb, found = sface_recognizer.embed_primary(blank)
    assert not found and emb.shape == (128,)  # the centre crop, flagged
    with pytest.raises(LeanfaceError, match="no face found"):
        sface_recognizer.compare(blank, _photos(lfw, "George_W_Bush", 1)[0])
    with pytest.raises(LeanfaceError, match="no decision threshold"):
        sface_recognizer.verify(blank, blank)


def test_primary_face_prefers_the_central_big_face():
    boxes = np.array([[0, 0, 60, 60], [70, 70, 130, 130], [95, 95, 105, 105]], np.float32)
    faces = Faces(boxes, np.array([0.9, 0.8, 0.99], np.float32), None, 200, 200)
    assert primary_face(faces) == 1  # the tiny face at the very centre is too small to be the subject
    assert primary_face(faces[[0]]) == 0 and primary_face(faces[[]]) is None


def test_identify_against_a_gallery(sface_recognizer, lfw, tmp_path, capsys):
    gallery = tmp_path / "gallery"
    for name in ("George_W_Bush", "Tony_Blair", "Colin_Powell"):
        (gallery / name).mkdir(parents=True)
        for f in _photos(lfw, name, 2):
            shutil.copy(f, gallery / name / f.name)
    (gallery / "Tony_Blair" / "broken.jpg").write_bytes(b"not a jpeg")
    import cv2

    cv2.imwrite(str(gallery / "Colin_Powell" / "blank.png"), np.full((120, 120, 3), 90, np.uint8))
    messages = []
    cache = tmp_path / "cache.npz"
    g = build_gallery(gallery, sface_recognizer, cache=cache, report=messages.append)
    assert isinstance(g, Gallery) and g.identities == ["Colin_Powell", "George_W_Bush", "Tony_Blair"]
    assert len(g.names) == 6 and cache.is_file()
    assert any("broken.jpg" in m for m in messages) and any("blank.png" in m and "no face" in m for m in messages)
    # The second build reads every embedding (and the remembered no-face) from the cache.
    calls = []
    real = sface_recognizer.embedder.embed_faces
    sface_recognizer.embedder.embed_faces = lambda *a: (calls.append(1), real(*a))[1]
    try:
        again = build_gallery(gallery, sface_recognizer, cache=cache, report=lambda m: None)
    finally:
        del sface_recognizer.embedder.embed_faces
    assert not calls and np.array_equal(again.embeddings, g.embeddings)

    ident = Identifier(sface_recognizer, g, threshold=0.363)
    query = _photos(lfw, "George_W_Bush")[5]  # not in the gallery
    faces = ident(query)
    k = primary_face(faces)
    assert faces.identities[k] == "George_W_Bush" and faces.similarities[k] > 0.363
    stranger = ident(_photos(lfw, "Gerhard_Schroeder", 1)[0])
    assert stranger.identities[primary_face(stranger)] == UNKNOWN
    record = faces.to_dict()["faces"][k]
    assert record["identity"] == "George_W_Bush" and "similarity" in record


def test_gallery_errors(sface_recognizer, tmp_path):
    with pytest.raises(LeanfaceError, match="gallery folder not found"):
        build_gallery(tmp_path / "none", sface_recognizer, cache=False)
    (tmp_path / "empty" / "alice").mkdir(parents=True)
    with pytest.raises(LeanfaceError, match="no images in the gallery"):
        build_gallery(tmp_path / "empty", sface_recognizer, cache=False, report=lambda m: None)
    import cv2

    cv2.imwrite(str(tmp_path / "empty" / "alice" / "wall.png"), np.full((100, 100, 3), 200, np.uint8))
    with pytest.raises(LeanfaceError, match="no face found in any gallery image"):
        build_gallery(tmp_path / "empty", sface_recognizer, cache=False, report=lambda m: None)


def test_dlib_adapter(lfw):
    pytest.importorskip("dlib", reason="dlib-bin is a test/bench extra")
    from leanface.recognize import Recognizer
    from leanface.recognize.peers import DlibEmbedder

    rec = Recognizer(embedder=DlibEmbedder(), threads=1)
    bush, blair = _photos(lfw, "George_W_Bush", 2), _photos(lfw, "Tony_Blair", 2)
    faces = rec(bush[0])
    assert faces.embeddings.shape[1] == 128
    same = min(rec.compare(bush[0], bush[1]), rec.compare(blair[0], blair[1]))
    assert same > max(rec.compare(bush[0], blair[0]), rec.compare(bush[1], blair[1]))


def test_dlib_box_mapping_matches_dlibs_own_detector(lfw):
    """Our boxes mapped to dlib's HOG convention (calibrated on CelebA photos) overlap the HOG detector's
    own boxes on LFW photos more than our raw boxes do."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin is a test/bench extra")
    from leanface.boxes import box_iou
    from leanface.infer import Detector, read_image
    from leanface.recognize import primary_face
    from leanface.recognize.peers import to_hog_box

    det, hog = Detector(score_thr=0.3, threads=1), dlib.get_frontal_face_detector()
    raw, mapped = [], []
    for person in ("George_W_Bush", "Tony_Blair", "Colin_Powell", "Donald_Rumsfeld"):
        for path in _photos(lfw, person, 5):
            img = read_image(path)
            faces, found = det(img), hog(img, 1)
            k = primary_face(faces)
            if k is None or len(found) != 1:
                continue
            theirs = np.array([[found[0].left(), found[0].top(), found[0].right(), found[0].bottom()]], np.float32)
            raw.append(float(box_iou(faces.boxes[k:k + 1], theirs)[0, 0]))
            mapped.append(float(box_iou(to_hog_box(faces.boxes[k:k + 1]).astype(np.float32), theirs)[0, 0]))
            sample = (img, faces.boxes[k:k + 1], theirs[0])
    assert len(raw) >= 15
    assert np.median(mapped) > np.median(raw) + 0.05 and np.median(mapped) > 0.75, (raw, mapped)
    # box="detector" hands dlib's own detection of the face to the shape predictor, ours where HOG finds none
    from leanface.recognize.peers import DlibEmbedder

    own, (img, ours, theirs) = DlibEmbedder(box="detector"), sample
    np.testing.assert_array_equal(own._boxes(img, ours)[0], theirs)
    np.testing.assert_allclose(own._boxes(np.zeros_like(img), ours), to_hog_box(ours))
    with pytest.raises(LeanfaceError, match="box must be one of"):
        DlibEmbedder(box="hog")
