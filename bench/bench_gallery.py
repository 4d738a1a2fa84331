"""Identification at scale (issue 35): search time, recall and memory of the gallery index, and FNIR at a
target FPIR on real faces for gallery sizes up to what our pools allow.

1. Speed (synthetic, 128-d): N embeddings, 5 per identity, drawn with the between- and within-identity
   covariance of an embedder's real embeddings (`RealLike`), added to a GalleryStore (SQLite) and indexed (exact below 50 K, else faiss
   HNSW or IVF-Flat); one thread; top-1 query time (median and 10-90% of 1,000 queries), recall@1 against exact
   search, for mated queries (a new sample of an enrolled identity) and non-mated ones (a new identity).
2. FNIR@FPIR on LFW: gallery = G LFW people enrolled with one photo each; mated probes = their other photos;
   non-mated probes = photos of LFW people not enrolled; then the same gallery padded with distractor faces
   from the unlabelled pools (LFW-filtered, people not in LFW). The threshold for FPIR 1% at each size comes
   from the embedder's impostor tail fitted on dev identities (CelebA folders, never LFW); measured FPIR and
   FNIR are printed beside it, for the bundled embedder and SFace.

    python bench/bench_gallery.py speed --sizes 10000,100000,1000000
    python bench/bench_gallery.py fpir --sface .cache/peers/face_recognition_sface_2021dec_int8bq.onnx \
        --lfw ../shared/data/lfw --dev ../shared/data/recog_train/celeba_aligned_lowres \
        --distractors ../staged/recog/utkface,../staged/recog/wider_faces,...
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from leanface.recognize import Embedder, GalleryStore, ImpostorTail
from leanface.recognize.open_set import impostor_scores
from leanface.recognize.search_index import SearchIndex


class RealLike:
    """Synthetic embeddings with the statistics of real ones: identity centres drawn from the between-identity
    Gaussian (mean and covariance of real identities' mean embeddings), faces from the within-identity
    covariance around them, normalised. Isotropic random vectors would be far harder (and unlike faces):
    every neighbour of a random query in 128-d is about as near as the next."""

    def __init__(self, emb: np.ndarray, labels: np.ndarray):
        keep = labels >= 0
        emb, labels = emb[keep].astype(np.float64), labels[keep]
        ids, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
        means = np.zeros((len(ids), emb.shape[1]))
        np.add.at(means, inv, emb)
        means /= counts[:, None]
        multi = counts[inv] >= 2
        within = emb[multi] - means[inv[multi]]
        self.mu = means.mean(0)
        self.between = self._root(np.cov(means, rowvar=False))
        # Unbiased within-identity covariance (each identity's deviations lose one degree of freedom).
        dof = max(1, int(multi.sum()) - int((counts >= 2).sum()))
        self.within = self._root(within.T @ within / dof)
        self.dim = emb.shape[1]

    @staticmethod
    def _root(cov: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(cov)
        return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float32)

    def centres(self, n: int, rng) -> np.ndarray:
        return (self.mu + rng.standard_normal((n, self.dim)) @ self.between.T).astype(np.float32)

    def faces(self, centres: np.ndarray, rng) -> np.ndarray:
        x = centres + rng.standard_normal(centres.shape).astype(np.float32) @ self.within.T
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(model: RealLike, n: int, per_id: int = 5, seed: int = 0):
    """n unit vectors, per_id faces each of n / per_id identities; returns (embeddings, identity centres)."""
    rng = np.random.default_rng(seed)
    ids = max(1, n // per_id)
    centres = model.centres(ids, rng)
    out = np.empty((n, model.dim), np.float32)
    for s in range(0, n, 200_000):  # in chunks: the noise alone would double the memory
        e = min(n, s + 200_000)
        out[s:e] = model.faces(centres[np.arange(s, e) % ids], rng)
    return out, centres


def _exact_top1(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    best = np.full(len(q), -1)
    score = np.full(len(q), -np.inf, np.float32)
    for s in range(0, len(x), 100_000):
        sims = q @ x[s:s + 100_000].T
        j = sims.argmax(1)
        v = sims[np.arange(len(q)), j]
        better = v > score
        best[better], score[better] = j[better] + s, v[better]
    return best


def real_model(data: str, embedder: str | None = None) -> RealLike:
    """The statistics of an embedder's (default: the bundled one's) embeddings of labelled identity folders."""
    from leanface.recognize.identities import load_identity_faces

    faces = load_identity_faces(data.split(","))
    emb = (Embedder(embedder, mean=0, std=1, threads=1) if embedder else Embedder(threads=1)).embed(faces.crops)
    print(f"real statistics: {len(emb)} faces of {len(np.unique(faces.labels[faces.labels >= 0]))} identities "
          f"({data})", file=sys.stderr)
    return RealLike(emb, faces.labels)


def speed(sizes: list[int], model: RealLike, queries: int = 1000, kind: str = "auto") -> list[dict]:
    rows = []
    for n in sizes:
        x, centres = clustered(model, n)
        rng = np.random.default_rng(1)
        q = model.faces(centres[rng.integers(0, len(centres), queries)], rng)  # new photos of enrolled people
        fresh, _ = clustered(model, queries, per_id=1, seed=7)  # people not enrolled
        names = [f"id{k}" for k in np.arange(n) % len(centres)]
        with tempfile.TemporaryDirectory() as tmp:
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            with GalleryStore(Path(tmp) / "g.db", create=True, setup={"bench": "synthetic"}) as store:
                store.add_many(names, x)
                t_store = time.perf_counter() - t0
                _, emb, _ = store.load()
                t1 = time.perf_counter()
                index = store.index(emb, kind if n > 50_000 else "auto")
                t_index = time.perf_counter() - t1
                db_bytes = store.path.stat().st_size
            t_add = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            row = {"size": n, "index": index.kind, "cells": index.cells, "effort": index.effort,
                   "add_s": round(t_add, 2), "store_write_s": round(t_store, 2), "index_build_s": round(t_index, 2),
                   "store_mb": round(db_bytes / 1e6, 1), "embeddings_mb": round(emb.nbytes / 1e6, 1),
                   "peak_rss_growth_mb": round((rss - rss0) / 1e3, 1)}
            truth = {"mated": _exact_top1(emb, q), "non_mated": _exact_top1(emb, fresh)}
            # The default operating point, then (IVF) the recall / time curve over the cells scanned.
            sweep = {"exact": (), "hnsw": (64, 256), "ivf": (index.cells // 16, index.cells // 8, index.cells // 2),
                     "ivfpq": (index.cells // 4, index.cells // 3)}[index.kind]
            efforts = [index.effort] + [e for e in sweep if e != index.effort]
            for effort in efforts:
                index.effort = effort
                point = dict(row, effort=effort)
                for probe, qq in (("mated", q), ("non_mated", fresh)):
                    times = []
                    found = np.empty(len(qq), int)
                    for k in range(len(qq)):
                        t = time.perf_counter()
                        found[k] = index.search(qq[k:k + 1], 1)[1][0, 0]
                        times.append(1e3 * (time.perf_counter() - t))
                    point[f"{probe}_ms"] = round(float(np.median(times)), 3)
                    point[f"{probe}_ms_p10_p90"] = [round(float(np.percentile(times, p)), 3) for p in (10, 90)]
                    point[f"{probe}_recall_at_1"] = round(float((found == truth[probe]).mean()), 4)
                rows.append(point)
                print(json.dumps(point), flush=True)
            del x, emb, index
    return rows


def _lfw_people(lfw: Path):
    from leanface.recognize.identities import load_identity_faces

    faces = load_identity_faces([lfw / "lfw-deepfunneled"])
    return faces


def fpir(args) -> list[dict]:
    from leanface.recognize.identities import load_identity_faces

    lfw = _lfw_people(Path(args.lfw))
    dev = load_identity_faces(args.dev.split(","))
    distract = load_identity_faces(args.distractors.split(",")) if args.distractors else None
    embedders = {"bundled MobileFaceNet": Embedder(threads=1)}
    if args.sface:
        embedders["SFace (OpenCV, int8)"] = Embedder(args.sface, mean=0, std=1, threads=1)
    measured = {k: v for k, v in embedders.items() if args.only is None or args.only in k.lower()}
    if distract is not None:
        # Distractors must be strangers to every LFW person: drop each face whose SFace embedding is nearer
        # than cosine 0.516 to any LFW image (the threshold of the embedder's pool filter, bench/lfw_filter.py).
        from leanface.train.recognition import max_cosine

        if not args.sface:
            raise SystemExit("--distractors needs --sface (its embeddings keep LFW people out of them)")
        sface = embedders["SFace (OpenCV, int8)"]
        e_sface = sface.embed(distract.crops)
        near = max_cosine(e_sface, sface.embed(lfw.crops)) > 0.516
        print(f"distractors: {int(near.sum())} of {len(near)} faces removed as possible LFW people", file=sys.stderr)
        distract, cached = distract.subset(~near), {sface: e_sface[~near]}
    else:
        cached = {}
    rng = np.random.default_rng(0)
    people = np.unique(lfw.labels)
    counts = np.bincount(lfw.labels)
    # Enrolled people beyond every multi-photo one are single-photo people, and some must stay out as probes.
    largest = len(people) - 50
    if max(args.sizes) > largest:
        raise SystemExit(f"--sizes: at most {largest} gallery people with this LFW copy ({len(people)} people, "
                         f"{int((counts[people] >= 2).sum())} with several photos; 50 kept out as non-mated probes)")
    rows = []
    for name, emb in measured.items():
        t0 = time.perf_counter()
        e_lfw = emb.embed(lfw.crops)
        tail = ImpostorTail.fit(impostor_scores(emb.embed(dev.crops), dev.labels), source=args.dev)
        e_dis = np.zeros((0, e_lfw.shape[1]), np.float32) if distract is None else \
            cached[emb] if emb in cached else emb.embed(distract.crops)
        print(f"{name}: embedded {len(e_lfw)} LFW, {len(dev.labels)} dev, {len(e_dis)} distractor faces in "
              f"{time.perf_counter() - t0:.0f} s; impostor tail t0 {tail.t0:.3f} beta {tail.beta:.4f}", file=sys.stderr)
        for size in args.sizes:
            multi = people[counts[people] >= 2]
            single = people[counts[people] == 1]
            # Enrolled: every multi-image person up to half the gallery, the rest single-image people, so
            # that non-mated probes (people not enrolled) remain.
            n_multi = min(len(multi), size // 2)
            enrolled = np.concatenate([rng.choice(multi, n_multi, replace=False),
                                       rng.choice(single, size - n_multi, replace=False)])
            first = {p: np.flatnonzero(lfw.labels == p)[0] for p in enrolled}
            g_idx = np.array([first[p] for p in enrolled])
            is_enrolled = np.isin(lfw.labels, enrolled)
            mated = np.flatnonzero(is_enrolled & ~np.isin(np.arange(len(lfw.labels)), g_idx))
            non_mated = np.flatnonzero(~is_enrolled)
            for pad in ([0, len(e_dis)] if len(e_dis) else [0]):
                g_emb = np.concatenate([e_lfw[g_idx], e_dis[:pad]])
                g_lab = np.concatenate([lfw.labels[g_idx], np.full(pad, -1)])
                index = SearchIndex(g_emb)
                thr = tail.threshold(0.01, len(g_emb))
                s_m, i_m = index.search(e_lfw[mated], 1)
                s_n, _ = index.search(e_lfw[non_mated], 1)
                hit = (g_lab[i_m[:, 0]] == lfw.labels[mated]) & (s_m[:, 0] > thr)
                row = {"embedder": name, "gallery_people": int(size), "distractors": int(pad),
                       "gallery_faces": int(len(g_emb)), "threshold_fpir_1pct": round(thr, 4),
                       "measured_fpir": round(float((s_n[:, 0] > thr).mean()), 4), "non_mated_probes": int(len(non_mated)),
                       "fnir": round(float(1 - hit.mean()), 4), "mated_probes": int(len(mated))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--sizes", default="10000,100000,1000000")
    s.add_argument("--queries", type=int, default=1000)
    s.add_argument("--real", default="../shared/data/recog_train/celeba_aligned_lowres",
                   help="labelled identity folders whose embedding statistics the synthetic gallery follows")
    s.add_argument("--stats-embedder", help="take the statistics from this ONNX embedder (e.g. SFace, mean 0 "
                                            "std 1) instead of the bundled one")
    s.add_argument("--out", help="write the rows as JSON here")
    s.add_argument("--index", default="auto", choices=("auto", "ivfpq", "hnsw", "ivf"), help="the approximate index past 50 K")
    f = sub.add_parser("fpir")
    f.add_argument("--lfw", required=True)
    f.add_argument("--dev", required=True, help="identity folders for the impostor tail (never LFW)")
    f.add_argument("--distractors", help="unlabelled pools, comma-separated (LFW-filtered)")
    f.add_argument("--sface", help="the SFace ONNX file (make peers)")
    f.add_argument("--sizes", default="100,1000,2000", help="gallery people (at most half of them with several "
                                                            "photos; LFW's 5,749 people bound it)")
    f.add_argument("--only", choices=("bundled", "sface"), help="measure one embedder")
    f.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    if args.what == "speed":
        rows = speed([int(v) for v in args.sizes.split(",")], real_model(args.real, args.stats_embedder), args.queries,
                     args.index)
    else:
        args.sizes = [int(v) for v in args.sizes.split(",")]
        rows = fpir(args)
    if getattr(args, "out", None):
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
