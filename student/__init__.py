"""x3kd student: the BEVDepth-style camera detector and X3KD's losses.

    cfg = load_train_config("configs/tiny.yaml").student   # student.train_config: the model/loss blocks
    model = build_student(cfg)                             # student.models.student (inference model)
    criterion = X3KDLoss(cfg)                              # student.losses (+ training-only modules)
    losses = criterion(model(batch), batch)                # batch: student.batch.StudentBatch
    total_loss(losses).backward()
    detections = model.eval().predict(batch)

From the command line (student.train, student.evaluate):

    x3kd-student train --cache cache.zarr --dataroot D --config configs/tiny.yaml --out runs/tiny
    x3kd-student eval --checkpoint runs/tiny/checkpoints/step_0000200.pt --dataroot D \
        --version v1.0-mini --split mini_val --out runs/tiny/eval
"""
