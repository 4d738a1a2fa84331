"""Reading LFW's View 2 pairs.txt and generic pairs files."""
import numpy as np
import pytest

from leanface.data.pairs import load_pairs, read_lfw_pairs, read_pairs_file
from leanface.errors import LeanfaceError

from ..conftest import SHARED, need


def test_lfw_view2():
    lfw = need(SHARED / "data" / "lfw")
    pairs = load_pairs(lfw)
    assert len(pairs) == 6000 and pairs.same.sum() == 3000
    assert np.bincount(pairs.fold).tolist() == [600] * 10
    assert all(pairs.same[f * 600:f * 600 + 300].all() and not pairs.same[f * 600 + 300:(f + 1) * 600].any()
               for f in range(10))
    assert pairs.left[0].name == "Abel_Pacheco_0001.jpg" and pairs.right[0].name == "Abel_Pacheco_0004.jpg"
    images = pairs.images
    assert len(images) == 7701 and all(p.is_file() for p in images[:50])


def test_malformed_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("1 1\nAnn 1 2\nAnn 1 Bob x\n")
    with pytest.raises(LeanfaceError, match=r"pairs.txt:3: expected"):
        read_lfw_pairs(bad, tmp_path)
    bad.write_text("1 1\nAnn 1 Bob 2\nCid 1 2\n")
    with pytest.raises(LeanfaceError, match=r"pairs.txt:2: a same-person line was expected"):
        read_lfw_pairs(bad, tmp_path)
    with pytest.raises(LeanfaceError, match="not an LFW folder"):
        load_pairs(tmp_path / "nowhere")


def test_generic_pairs_file(tmp_path):
    f = tmp_path / "p.tsv"
    f.write_text("# comment\na.jpg\tb.jpg\t1\t0\nc.jpg\td.jpg\tfalse\t1\n")
    pairs = read_pairs_file(f, tmp_path)
    assert pairs.same.tolist() == [True, False] and pairs.fold.tolist() == [0, 1]
    assert pairs.left[1] == tmp_path / "c.jpg"
    f.write_text("a.jpg\tb.jpg\tmaybe\t0\n")
    with pytest.raises(LeanfaceError, match=r"p.tsv:1: expected"):
        read_pairs_file(f, tmp_path)


def test_template_sides(tmp_path):
    """A side may be a folder (its images, sorted) or paths joined by ';': one template each."""
    (tmp_path / "track1").mkdir()
    for name in ("f2.jpg", "f1.png", "notes.txt"):
        (tmp_path / "track1" / name).write_bytes(b"x")
    f = tmp_path / "t.tsv"
    f.write_text("track1\ta.jpg;b.jpg\t1\t0\ntrack1\tc.jpg\t0\t1\n")
    pairs = read_pairs_file(f, tmp_path)
    assert pairs.members(pairs.left[0]) == (tmp_path / "track1" / "f1.png", tmp_path / "track1" / "f2.jpg")
    assert pairs.members(pairs.right[0]) == (tmp_path / "a.jpg", tmp_path / "b.jpg")
    assert pairs.members(pairs.right[1]) == (tmp_path / "c.jpg",) and pairs.left[1] == pairs.left[0]
    assert pairs.images == [tmp_path / "track1" / "f1.png", tmp_path / "track1" / "f2.jpg", tmp_path / "a.jpg",
                            tmp_path / "b.jpg", tmp_path / "c.jpg"]
    (tmp_path / "empty").mkdir()
    f.write_text("a.jpg\tb.jpg\t1\t0\nempty\tc.jpg\t0\t0\n")
    with pytest.raises(LeanfaceError, match=r"t.tsv:2: .*empty: template folder holds no images"):
        read_pairs_file(f, tmp_path)
