"""EResFD and EXTD: official checkpoints import one-to-one and reproduce the official implementations'
own outputs (../shared/models/reference_outputs, made by clovaai's code) on real WIDER images."""
import cv2
import numpy as np
import pytest
import torch

from leanface.errors import LeanfaceError
from leanface.boxes import box_iou, nms, ssd_decode, ssd_encode
from leanface.infer import read_image
from leanface.models import create_model, get_config, get_family, save_checkpoint
from leanface.models.importers import import_weights
from leanface.models.ssd import SSDDecoder, feature_sizes
from leanface.train.ssd_loss import SSDLoss

from ..conftest import SHARED, WIDER, need

MODELS = SHARED / "models"
REF = MODELS / "reference_outputs"
# zoo name -> (official file, reference file, module parameter count from the reference README)
OFFICIAL = {
    "eresfd": ("eresfd/eresfd_16.pth.base.pth", "EResFD.npz", 92_208),
    "extd_32": ("extd/EXTD_32.pth", "EXTD_32.npz", 62_939),
    "extd_48": ("extd/EXTD_48.pth", "EXTD_48.npz", 100_160),
    "extd_64": ("extd/EXTD_64.pth", "EXTD_64.npz", 162_352),
}
# (image index, size) runs per model beyond the dense img0 480x640; EXTD forwards cost ~1-2 s each.
EXTRA_RUNS = {
    "eresfd": [(0, (640, 640)), (1, (640, 640)), (1, (480, 640)), (2, (640, 640)), (2, (480, 640)),
               (3, (640, 640)), (3, (480, 640))],
    "extd_32": [(1, (640, 640))],
    "extd_48": [(2, (480, 640))],
    "extd_64": [(3, (480, 640))],
}


@pytest.fixture(scope="module")
def runs():
    """{model: {(image, (H, W)): (input, loc (N, 4), conf (N, 2), score (N,))}} with imported official weights."""
    result = {}
    for name, (src, ref_file, _) in OFFICIAL.items():
        cfg, state = import_weights(need(MODELS / src))
        net = create_model(cfg)
        net.load_state_dict(state)
        ref = np.load(need(REF / ref_file))
        out = {}
        for i, hw in [(0, (480, 640))] + EXTRA_RUNS[name]:
            x = _official_input(WIDER / "WIDER_val" / "images" / str(ref["image_files"][i]), hw)
            with torch.no_grad():
                loc, conf = net(torch.from_numpy(x))
                _, score = net.forward_export(torch.from_numpy(x))
            out[i, hw] = (x, loc[0].numpy(), conf[0].numpy(), score[0].numpy())
        result[name] = (cfg, ref, out)
    return result


def _official_input(path, hw):
    """The reference README's preprocessing: RGB, cv2 bilinear resize to exactly (H, W), minus (123, 117, 104)."""
    rgb = read_image(need(path))
    x = cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return (x - np.array([123, 117, 104], np.float32)).transpose(2, 0, 1)[None].copy()


def _tag(i, hw):
    return f"img{i}_{hw[0]}x{hw[1]}"


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_import_uses_every_tensor_once(name):
    src, _, params = OFFICIAL[name]
    path = need(MODELS / src)
    cfg, state = import_weights(path)
    assert cfg.name == name
    if name == "eresfd":
        official = {}
        for part in ("base", "loc", "conf", "act_loc", "act_conf"):
            sub = torch.load(str(path).replace(".base.pth", f".{part}.pth"), map_location="cpu", weights_only=True)
            official.update({f"{part}.{k}": v for k, v in sub.items()})
    else:
        official = torch.load(path, map_location="cpu", weights_only=True)
    assert len(state) == len(official)
    # Same multiset of tensors: each checkpoint tensor lands in exactly one parameter or buffer.
    fingerprint = sorted((tuple(v.shape), float(v.double().sum())) for v in official.values())
    assert sorted((tuple(v.shape), float(v.double().sum())) for v in state.values()) == fingerprint
    net = create_model(cfg)
    net.load_state_dict(state)
    assert sum(p.numel() for p in net.parameters()) == params


def test_eresfd_split_checkpoint_found_from_any_part(tmp_path):
    src = need(MODELS / "eresfd" / "eresfd_16.pth.base.pth")
    _, a = import_weights(src)
    _, b = import_weights(MODELS / "eresfd" / "eresfd_16.pth.conf.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lone = tmp_path / "x.pth.base.pth"
    lone.write_bytes(src.read_bytes())
    with pytest.raises(LeanfaceError, match=r"x\.pth\.loc\.pth: missing part of the EResFD checkpoint"):
        import_weights(lone)


def test_wrong_width_is_a_clear_error():
    src = need(MODELS / "extd" / "EXTD_32.pth")
    with pytest.raises(LeanfaceError, match=r"EXTD_32\.pth: matches no extd zoo model \(extd_48: "):
        import_weights(src, "extd_48")
    with pytest.raises(LeanfaceError, match=r"cannot be loaded into scrfd_500m"):
        import_weights(src, "scrfd_500m")


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_priors_match_official(name):
    ref = np.load(need(REF / OFFICIAL[name][1]))
    decoder = _decoder(get_config(name))
    assert isinstance(decoder, SSDDecoder)
    for hw in ((640, 640), (480, 640)):
        tag = f"{hw[0]}x{hw[1]}"
        assert int(ref[f"num_anchors_{tag}"]) == len(decoder.priors(hw))
        np.testing.assert_array_equal(decoder.priors(hw), ref[f"priors_{tag}"])


def test_feature_sizes_by_hand():
    # README: 480 rows -> 120, 60, 30, 15, 8, 4 (ceil halving); 640 cols -> 160 ... 5.
    assert feature_sizes((480, 640)) == [(120, 160), (60, 80), (30, 40), (15, 20), (8, 10), (4, 5)]


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_raw_outputs_match_official(runs, name):
    _, ref, out = runs[name]
    for (i, hw), (x, loc, conf, score) in out.items():
        tag = _tag(i, hw)
        # The rebuilt input is the one the official code saw (integers in float32: exact).
        np.testing.assert_array_equal(x[0, :, :32, :32], ref[f"{tag}_input_crop"])
        np.testing.assert_array_equal(x[0].sum(axis=(1, 2), dtype=np.float64), ref[f"{tag}_input_channel_sums"])
        if f"{tag}_loc" in ref.files:
            idx = np.arange(len(loc))
            ref_loc, ref_conf, ref_score = ref[f"{tag}_loc"][0], ref[f"{tag}_conf"][0], ref[f"{tag}_scores_fg"]
        else:
            idx = ref[f"{tag}_sample_idx"]
            ref_loc, ref_conf, ref_score = (ref[f"{tag}_sample_{k}"] for k in ("loc", "conf", "scores_fg"))
        assert np.abs(loc[idx] - ref_loc).max() < 1e-4
        assert np.abs(conf[idx] - ref_conf).max() < 1e-4
        assert np.abs(score[idx] - ref_score).max() < 1e-5


def _decoder(cfg):
    return get_family(cfg.family).decoder(cfg)


def _official_detect(cfg, loc, score, hw):
    """Our decoder + NMS with the family's test settings (score > 0.05, 5000 best, IoU 0.3, 750 kept), on
    unclipped boxes as the official test path."""
    settings = get_family(cfg.family).preset("eval").postprocess
    boxes, scores, kps = _decoder(cfg)([loc[None], score[None]], hw, settings.score_thr)[0]
    assert kps is None
    top = np.sort(np.argsort(-scores, kind="stable")[:settings.pre_nms_topk])
    keep = top[nms(boxes[top], scores[top], settings.nms_thr, settings.nms_offset)][:settings.max_faces]
    return scores[keep], boxes[keep] / np.array([hw[1], hw[0]] * 2, np.float32)


def _assert_same_detections(scores, boxes, ref_dets, nms_thr: float):
    """Equal up to the order among (near-)tied scores: each official row matches one of ours one-to-one. One
    exception, a tie NMS cannot break the same way on every CPU: two overlapping boxes (IoU above the NMS
    threshold) whose scores differ by under 1e-5, where the official run kept one and ours the other."""
    assert len(scores) == len(ref_dets)
    np.testing.assert_allclose(scores, ref_dets[:, 0], atol=1e-5)
    unused = np.ones(len(scores), bool)
    unmatched = []
    for s, box in zip(ref_dets[:, 0], ref_dets[:, 1:]):
        cand = np.flatnonzero(unused & (np.abs(scores - s) <= 1e-5))
        err = np.abs(boxes[cand] - box).max(axis=1) if len(cand) else np.array([np.inf])
        if err.min() < 1e-5:
            unused[cand[np.argmin(err)]] = False
        else:
            unmatched.append((s, box))
    for s, box in unmatched:
        rivals = np.flatnonzero(unused & (np.abs(scores - s) <= 1e-5))
        iou = box_iou(box[None], boxes[rivals])[0] if len(rivals) else np.zeros(1)
        assert iou.max() > nms_thr, f"official detection {s:.6f} {box} missing, and no tied rival kept instead"
        unused[rivals[np.argmax(iou)]] = False


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_final_detections_match_official(runs, name):
    cfg, ref, out = runs[name]
    for (i, hw), (_, loc, _, score) in out.items():
        scores, boxes = _official_detect(cfg, loc, score, hw)
        _assert_same_detections(scores, boxes, ref[f"{_tag(i, hw)}_dets"],
                                get_family(cfg.family).preset("eval").postprocess.nms_thr)


def test_decode_by_hand():
    # Prior centred at (0.5, 0.25) of size 0.1 x 0.2; loc (1, -2, ln 2 / 0.2, 0):
    # centre (0.5 + 1*0.1*0.1, 0.25 - 2*0.1*0.2) = (0.51, 0.21); size (0.2, 0.2).
    priors = np.array([[0.5, 0.25, 0.1, 0.2]], np.float32)
    loc = np.array([[1.0, -2.0, np.log(2.0) / 0.2, 0.0]], np.float32)
    box = ssd_decode(loc, priors, (0.1, 0.2))
    np.testing.assert_allclose(box, [[0.41, 0.11, 0.61, 0.31]], atol=1e-6)
    back = ssd_encode(torch.from_numpy(box), torch.from_numpy(priors), (0.1, 0.2))
    np.testing.assert_allclose(back.numpy(), loc, atol=1e-5)


def test_decoder_threshold_and_pixels():
    cfg = get_config("extd_32")
    dec = _decoder(cfg)
    n = len(dec.priors((64, 96)))
    loc = np.zeros((1, n, 4), np.float32)
    score = np.full((1, n), 0.5, np.float32)
    score[0, 3] = 0.9  # level 0 (16x24 map), row 0, col 3: centre x = 3.5 * 4 = 14 px, y = 2 px
    boxes, scores, _ = dec([loc, score], (64, 96), 0.5)[0]  # scores equal to the threshold are dropped
    assert scores.tolist() == [np.float32(0.9)]
    np.testing.assert_allclose(boxes, [[14 - 8, 2 - 8, 14 + 8, 2 + 8]], atol=1e-4)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_anchor_layout_at_any_input_size(name):
    cfg = get_config(name)
    assert cfg.strides == (4, 8, 16, 32, 64, 128) and not cfg.has_landmarks
    loc, conf = create_model(name)(torch.randn(2, 3, 72, 100))  # not a multiple of any stride
    n = sum(h * w for h, w in feature_sizes((72, 100)))
    assert loc.shape == (2, n, 4) and conf.shape == (2, n, 2)


def test_imported_checkpoint_round_trip(tmp_path):
    cfg, state = import_weights(need(MODELS / "eresfd" / "eresfd_16.pth.base.pth"))
    save_checkpoint(tmp_path / "eresfd.pt", cfg, state)
    net = create_model(None, tmp_path / "eresfd.pt")
    assert net.cfg == cfg and net.output_names == ["loc", "score"]


def test_ssd_loss_matching_by_hand():
    # 64x64 input; level-0 anchors are 16x16 px centred at 2 + 4j. A face [2, 2, 18, 18] equals the anchor
    # centred at (10, 10); the 8 anchors shifted by 4 px overlap it with IoU 0.6 (edge) or 0.39 (corner),
    # all >= 0.35. Scale compensation adds (1 + 1) // 2 = 1 anchor from the (0.1, 0.35) pool: 10 positives.
    loss_fn = SSDLoss(get_config("extd_32").anchors, (64, 64))
    labels, targets = loss_fn.match(torch.tensor([[2.0, 2.0, 18.0, 18.0]]))
    assert int(labels.sum()) == 10
    exact, right = 2 * 16 + 2, 2 * 16 + 3  # row 2, cols 2 and 3 of the 16x16 level-0 map
    assert labels[exact] == labels[right] == 1
    torch.testing.assert_close(targets[exact], torch.zeros(4))
    # Centre 10 vs 14 px: (10 - 14) / (0.1 * 16) = -2.5; same size: log(1) / 0.2 = 0.
    torch.testing.assert_close(targets[right], torch.tensor([-2.5, 0.0, 0.0, 0.0]))
    # All-zero logits: cross-entropy ln 2 on the 10 positives and 3 x 10 mined negatives, over 10 positives.
    n = len(loss_fn.priors)
    out = loss_fn((torch.zeros(1, n, 4), torch.zeros(1, n, 2)), [torch.tensor([[2.0, 2.0, 18.0, 18.0]])])
    assert float(out["num_pos"]) == 10
    assert float(out["cls"]) == pytest.approx(4 * np.log(2), rel=1e-6)
