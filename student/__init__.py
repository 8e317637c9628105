"""x3kd student: the BEVDepth-style camera detector and X3KD's losses.

    cfg = load_train_config("configs/tiny.yaml").student   # student.train_config: the model/loss blocks
    model = build_student(cfg)                             # student.models.student (inference model)
    criterion = X3KDLoss(cfg)                              # student.losses (+ training-only modules)
    losses = criterion(model(batch), batch)                # batch: student.batch.StudentBatch
    total_loss(losses).backward()
    detections = model.eval().predict(batch)

From the command line (student.train, student.evaluate):

    x3kd-student train --cache demo_out/cache_train.zarr --dataroot demo_out/data --config configs/lab.yaml \
        --out runs/lab
    x3kd-student eval --checkpoint runs/lab/checkpoints/step_0000800.pt --dataroot demo_out/data \
        --version v1.0-trainval --split val --out runs/lab/eval
"""
