"""Retrieval with a trained model: tools/query.py's top-k JSON lines, and the demo's ranked lists
(tools/plot_ranked_lists.py), which rank as fast-reid's evaluation does."""
import json
import os
import shutil

import numpy as np
import pytest
from fastreid.data.transforms import build_transforms
from fastreid.evaluation.rank import evaluate_rank
from PIL import Image

from fastreid_slr.data.paths import build_dataset
from fastreid_slr.deploy import load_trained
from fastreid_slr.retrieval import image_features
from procedural_reid import apply_procedural_config
from tiny import tiny_slr_opts
from user_kit import DEMO_CONFIG, tiny_demo_cfg, tool, trained_checkpoint


def test_query_returns_each_querys_nearest_gallery_images_as_json_lines(tmp_path):
    weights = str(tmp_path / "model_final.pth")
    trained_checkpoint(tiny_demo_cfg(), weights)
    rng = np.random.default_rng(0)
    gallery = []
    for i in range(6):  # a colour and a band of its own each: images that differ in more than noise
        pixels = np.full((64, 32, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        pixels[8 * i:8 * i + 16] = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        gallery.append(str(tmp_path / "gallery" / f"g{i}.png"))
        os.makedirs(os.path.dirname(gallery[-1]), exist_ok=True)
        Image.fromarray(pixels).save(gallery[-1])
    queries = [str(tmp_path / "q4.png"), str(tmp_path / "q1.png")]
    for query, twin in zip(queries, (gallery[4], gallery[1])):
        shutil.copy(twin, query)
    output = tmp_path / "top.jsonl"
    tool("query").main([*queries, "--gallery", str(tmp_path / "gallery"), "--config-file", DEMO_CONFIG,
                        "--weights", weights, "-k", "3", "--output", str(output), "--opts", *tiny_slr_opts()])

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["query"] for line in lines] == queries
    for line, twin in zip(lines, (gallery[4], gallery[1])):
        matches = line["matches"]
        assert len(matches) == 3 and set(matches[0]) == {"path", "distance"}
        assert matches[0]["path"] == twin and abs(matches[0]["distance"]) < 1e-5  # the same image, nearest
        distances = [m["distance"] for m in matches]
        assert distances == sorted(distances) and distances[1] > distances[0]
        assert len({m["path"] for m in matches}) == 3 and all(m["path"] in gallery for m in matches)


@pytest.fixture
def two_models(tmp_path):
    paths = [str(tmp_path / f"model_{seed}.pth") for seed in (0, 1)]
    for seed, path in enumerate(paths):
        trained_checkpoint(tiny_demo_cfg(), path, seed=seed)
    return paths


def test_ranked_lists_rank_and_score_as_fast_reids_evaluation(two_models):
    plot = tool("plot_ranked_lists")
    cfg = tiny_demo_cfg()
    apply_procedural_config(cfg)
    data = build_dataset(cfg.DATASETS.TESTS[0])
    rankings = plot.ranked_lists(cfg, two_models[0], data.query, data.gallery)

    features = image_features(load_trained(cfg, two_models[0]), [p for p, _, _ in data.query + data.gallery],
                              build_transforms(cfg, is_train=False), 64)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    query, gallery = features[:len(data.query)], features[len(data.query):]
    (q_pids, q_cams), (g_pids, g_cams) = ([np.array([item[i] for item in items]) for i in (1, 2)]
                                          for items in (data.query, data.gallery))
    _, all_ap, _ = evaluate_rank(1 - query @ gallery.T, q_pids, g_pids, q_cams, g_cams, max_rank=5,
                                 use_cython=False)
    assert len(all_ap) == len(data.query) > 3  # every query has a true match in another camera
    assert [plot.average_precision(matches) for _, matches in rankings] == pytest.approx(all_ap, abs=1e-6)
    for (_, pid, cam), (order, matches) in zip(data.query, rankings):
        left_out = (g_pids == pid) & (g_cams == cam)
        assert sorted(order) == list(np.flatnonzero(~left_out))  # all the gallery but those, once each
        assert list(matches) == list(g_pids[order] == pid)


def test_the_picture_frames_true_matches_and_has_a_row_per_query_and_model(two_models, tmp_path, monkeypatch):
    plot = tool("plot_ranked_lists")
    args = ["--config-file", DEMO_CONFIG, "--model", "source only", two_models[0], "--model", "SLR",
            two_models[1], "--queries", "3", "--top", "5", "-o", str(tmp_path / "ranked.png"), *tiny_slr_opts()]
    png = plot.main(args)
    with Image.open(png) as image:  # figure inches x 100 dpi: 6 columns, 3 queries x 2 models
        assert image.size == (round(100 * (0.75 * 6 + 1.2)), round(100 * 1.45 * 6))

    cells = []
    monkeypatch.setattr(plot, "_image", lambda ax, path, title, frame=None: cells.append((path, title, frame)))
    plot.main(args)
    assert len(cells) == 3 * 2 * 6
    for row in range(6):
        query, *shown = cells[6 * row:6 * row + 6]
        assert query[2] is None and query[1].startswith(f"query {row // 2 + 1}, cam ")
        query_pid = os.path.basename(query[0]).split("_")[0]
        for path, title, frame in shown:
            assert frame == (plot.TRUE if os.path.basename(path).split("_")[0] == query_pid else plot.FALSE)
            assert title.startswith("cam ")
