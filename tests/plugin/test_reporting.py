"""Best-epoch reporting, labelled: the reported figure stays the last epoch's; the best evaluated
epoch (chosen with the target's labels) is an extra, named as such in the log, slr_epochs.jsonl
and the demo's summary."""
import importlib.util
import json
import logging
import os
import types

from fastreid_slr.engine.hooks import EpochRecordHook, PseudoLabelHook
from fastreid_slr.engine.records import BEST_BY_TARGET_LABELS, RunRecord
from tiny import REPO


def _hook(tmp_path, max_epoch=5):
    hook = EpochRecordHook(PseudoLabelHook(labeler=None, num_items=10), str(tmp_path / "slr_epochs.jsonl"))
    hook.trainer = types.SimpleNamespace(epoch=0, max_epoch=max_epoch, results=None, epoch_seconds={})
    hook.trainer.last_evaluation = lambda: hook.trainer.results
    return hook


def _evaluate(hook, epoch, mAP, after_train=False):
    hook.trainer.epoch = epoch
    hook.trainer.results = {"mAP": mAP, "Rank-1": mAP + 20.0}  # a new object: a new evaluation
    hook.after_train() if after_train else hook.after_epoch()


def _records(tmp_path):
    with open(tmp_path / "slr_epochs.jsonl") as f:
        return [json.loads(line) for line in f if line.startswith("{") and line.rstrip().endswith("}")]


def test_best_evaluated_epoch_is_recorded_and_logged_as_chosen_with_target_labels(tmp_path, caplog):
    hook = _hook(tmp_path)
    _evaluate(hook, 1, 50.0)
    _evaluate(hook, 3, 70.0)  # an abandoned run's epoch 3 ...
    with open(tmp_path / "slr_epochs.jsonl", "a") as f:
        f.write('{"epoch": 3, "clusters_bef')  # ... killed mid-line, then resumed:
        f.write("\n")
    _evaluate(hook, 3, 60.0)  # the resumed run's epoch 3 replaces it
    _evaluate(hook, 4, 55.0)  # the last epoch, evaluated by fast-reid's EvalHook in after_train
    with caplog.at_level(logging.INFO, logger="fastreid_slr.engine.hooks"):
        hook.after_train()
    records = _records(tmp_path)
    assert [r["eval"]["mAP"] for r in records if "eval" in r] == [50.0, 70.0, 60.0, 55.0]
    assert records[-1] == {BEST_BY_TARGET_LABELS: {"epoch": 3, "mAP": 60.0, "Rank-1": 80.0}}
    assert "chosen with the target's labels" in caplog.text and "epoch 3, mAP 60.00" in caplog.text


def test_off_period_last_evaluation_counts_and_a_failed_training_writes_no_best(tmp_path):
    hook = _hook(tmp_path)
    _evaluate(hook, 1, 50.0)
    _evaluate(hook, 4, 65.0, after_train=True)  # EvalHook's after_train evaluation, then ours
    assert _records(tmp_path)[-1][BEST_BY_TARGET_LABELS]["epoch"] == 4

    failed = _hook(tmp_path / "failed")
    os.makedirs(tmp_path / "failed")
    _evaluate(failed, 1, 50.0)
    failed.trainer.epoch = 2  # fast-reid calls after_train when training raised at epoch 2 of 5
    failed.after_train()
    assert not any(BEST_BY_TARGET_LABELS in r for r in _records(tmp_path / "failed"))


def test_each_epoch_records_where_its_time_went_and_the_run_ends_with_the_shares(tmp_path, caplog):
    hook = _hook(tmp_path, max_epoch=2)
    hook.before_train()
    for epoch in range(2):
        hook.trainer.epoch = epoch
        hook.pseudo_label_hook.epoch_stats = {
            "clusters_before": 5 + epoch, "seconds_search": 1.0, "seconds_jaccard": 2.0, "seconds_source_term": 0.5,
            "seconds_cluster": 0.25, "seconds_projection": 0.125, "seconds_soft_labels": 0.125, "seconds_harden": 0.25}
        hook.trainer.epoch_seconds.update({"features_target": 3.0, "features_target/camera_0": 1.5, "evaluation": 4.0})
        hook.before_step()
        hook.after_step()
        hook.after_epoch()
        assert hook.trainer.epoch_seconds == {}, "each epoch starts its own account"
    with caplog.at_level(logging.INFO, logger="fastreid_slr.engine.hooks"):
        hook.after_train()
    record = RunRecord.read(str(tmp_path))
    assert [r["clusters_before"] for r in record.pseudo_labels()] == [5, 6]
    seconds = record.seconds()[1]
    assert seconds["refine"] == 0.5 and seconds["search"] == 1.0 and seconds["features_target/camera_0"] == 1.5
    assert 0 <= seconds["train"] < 1
    shares = record.time_shares()
    assert list(shares)[:3] == ["features_target", "search", "jaccard"] and "features_target/camera_0" not in shares
    assert shares["features_target"] == 6.0 and shares["evaluation"] == 8.0
    assert "Where the 2 epochs'" in caplog.text and "features_target 6s" in caplog.text


def _demo_module():
    spec = importlib.util.spec_from_file_location("demo_for_test", os.path.join(REPO, "tools", "demo.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_demo_summary_keeps_the_last_epoch_and_adds_the_labelled_best(tmp_path):
    demo = _demo_module()
    run = tmp_path / "slr"
    run.mkdir()
    (run / "final_results.json").write_text(json.dumps({"mAP": 55.0, "Rank-1": 75.0}))
    lines = [{"epoch": 0, "pseudo_labels": {"clusters_before": 9, "pair_precision": 0.3, "pair_recall": 0.5,
                                            "ari": 0.4}, "eval": {"mAP": 60.0}},
             {BEST_BY_TARGET_LABELS: {"epoch": 0, "mAP": 60.0, "Rank-1": 80.0}}]
    (run / "slr_epochs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    source = tmp_path / "source"
    source.mkdir()
    (source / "final_results.json").write_text(json.dumps({"mAP": 40.0, "Rank-1": 60.0}))

    rows = [demo.row("source only", str(source), 1.0, False), demo.row("SLR", str(run), 2.0, True)]
    assert rows[1]["mAP"] == 55.0  # the table's figure: the last epoch
    assert rows[1][BEST_BY_TARGET_LABELS] == {"epoch": 0, "mAP": 60.0, "Rank-1": 80.0}
    assert rows[0][BEST_BY_TARGET_LABELS] is None
    assert demo.best_epoch_line(rows) == ("Best evaluated epoch, chosen with the target's labels (optimistic, not "
                                          "the figures above): SLR epoch 0 mAP 60.0")
