"""`make gpu-check` (tools/gpu_check.py): does this machine run the paper's SLR, and how fast?

With CUDA the check takes configs/SLR/d2m.yml's model as the paper trains it (dual ResNet-50,
256x128, batch 16, ImageNet weights off: ``PRETRAIN False``) onto the procedural data and runs its
parts, in the order of ``registry.PARTS``:

- pipeline: stage 1 (source pretraining) and two short stage-2 epochs (clustering, refinement,
  classifier resizing, teacher evaluation);
- step_time: SLR training steps against fast-reid's ``Baseline`` with the same backbone depth,
  input and batch, in the same process; also with the cuDNN settings ``SEED`` turns on;
- features: images/s of the teacher's feature extraction that precedes every clustering;
- pseudo_labels: the clustering step at Market scale, its exact search on each backend (torch on
  the GPU, faiss-gpu when installed, the CPU's BLAS blocks): identical labels;
- amp: one stage-2 epoch with ``SOLVER.AMP.ENABLED True``;
- repeatable: two seeded runs of the same steps, compared bit for bit;
- epoch: two whole stage-2 epochs of d2m at Market scale, part by part, and what a whole stage 2
  would take on this machine;
- ddp: with two or more GPUs, tools/train_net.py's run through ``--num-gpus 2`` (NCCL); every rank
  must end with the same labels.

Without CUDA the same parts run in a tiny CPU mode (configs/Demo/tiny.yml, a dual ResNet-18) so
that CI keeps the check working; its report says that nothing was measured on a GPU. Each part is
a ``part.Part``: its ``run`` returns its numbers, its ``summary`` says them in one line of the
table. The package knows no dataset: the caller hands it the config files and the extensions of
its data (tools/gpu_check.py: the procedural datasets).
"""
