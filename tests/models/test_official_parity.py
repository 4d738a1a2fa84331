"""Imported official weights reproduce the official ONNX files (onnxruntime) on real WIDER images."""
import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from leanface import Detector, create_model, read_image


def _session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _blob(rgb, h, w):
    x = cv2.resize(rgb, (w, h)).astype(np.float32)
    return ((x - 127.5) / 128.0).transpose(2, 0, 1)[None].copy()


@pytest.mark.parametrize("model", ["scrfd_500m_kps", "scrfd_2.5g_kps"])
def test_raw_outputs_match_onnxruntime(official, val_images, model):
    onnx_path, weights = official[model]
    net = create_model(None, weights)
    sess = _session(onnx_path)
    for img_path, (h, w) in zip(val_images[::120], [(480, 640), (640, 640), (352, 608)]):
        x = _blob(read_image(img_path), h, w)
        ref = sess.run(None, {"input.1": x})
        with torch.no_grad():
            ours = [t[0].numpy() for t in net.forward_export(torch.from_numpy(x))]
        assert len(ours) == len(ref) == 9
        for a, b in zip(ours, ref):
            assert a.shape == b.shape
            assert np.abs(a - b).max() < 1e-4


def _reference_detect(sess, rgb, score_thr, nms_thr):
    """Plain re-statement of the official protocol: long side 640, pad to x32, decode, mmcv NMS."""
    h0, w0 = rgb.shape[:2]
    s = 640 / max(h0, w0)
    nh, nw = int(h0 * s + 0.5), int(w0 * s + 0.5)
    ph, pw = -(-nh // 32) * 32, -(-nw // 32) * 32
    x = np.zeros((1, 3, ph, pw), np.float32)
    x[0, :, :nh, :nw] = ((cv2.resize(rgb, (nw, nh)).astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)
    outs = sess.run(None, {"input.1": x})
    dets = []
    for k, stride in enumerate((8, 16, 32)):
        scores, dist, kps = outs[k][:, 0], outs[k + 3], outs[k + 6]
        cols = pw // stride
        for n in np.flatnonzero(scores >= score_thr):
            cell = n // 2
            cx, cy = (cell % cols) * stride, (cell // cols) * stride
            l, t, r, b = dist[n] * stride
            box = [min(max(cx - l, 0), nw), min(max(cy - t, 0), nh), min(max(cx + r, 0), nw), min(max(cy + b, 0), nh)]
            pts = [(cx + kps[n, 2 * j] * stride, cy + kps[n, 2 * j + 1] * stride) for j in range(5)]
            dets.append((float(scores[n]), box, pts))
    dets.sort(key=lambda d: -d[0])
    kept = []
    for d in dets:
        ok = True
        for k in kept:
            a, b = d[1], k[1]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if inter / union > nms_thr:
                ok = False
                break
        if ok:
            kept.append(d)
    sx, sy = nw / w0, nh / h0
    boxes = np.array([[b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy] for _, b, _ in kept]).reshape(-1, 4)
    pts = np.array([[(x / sx, y / sy) for x, y in p] for _, _, p in kept]).reshape(-1, 5, 2)
    return np.array([d[0] for d in kept]), boxes, pts


@pytest.mark.parametrize("model", ["scrfd_500m_kps", "scrfd_2.5g_kps"])
def test_final_detections_identical(official, val_images, model):
    onnx_path, weights = official[model]
    ours = Detector(weights=weights, score_thr=0.3, nms_thr=0.45)
    theirs = Detector(weights=onnx_path, score_thr=0.3, nms_thr=0.45)
    sess = _session(onnx_path)
    images = [read_image(p) for p in val_images[5::70]]
    for rgb, a, b in zip(images, ours(images), theirs(images)):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
        scores, boxes, pts = _reference_detect(sess, rgb, 0.3, 0.45)
        assert len(scores) == len(b)
        np.testing.assert_allclose(b.scores, scores, atol=1e-6)
        np.testing.assert_allclose(b.boxes, boxes, atol=1e-3)
        np.testing.assert_allclose(b.landmarks, pts, atol=1e-3)


def test_wrong_model_is_a_clear_error():
    from leanface.errors import LeanfaceError
    from leanface.models.importers import import_weights

    from ..conftest import OFFICIAL_ONNX, need

    src = need(OFFICIAL_ONNX / "det_500m.onnx")
    with pytest.raises(LeanfaceError, match=r"det_500m.onnx: does not match scrfd_2.5g_kps: .*convs"):
        import_weights(src, "scrfd_2.5g_kps")
