"""x3kd student: the BEVDepth-style camera detector and X3KD's losses.

    cfg = StudentConfig.from_yaml("student.yaml")         # student.config
    model = build_student(cfg)                             # student.models.student (inference model)
    criterion = X3KDLoss(cfg)                              # student.losses (+ training-only modules)
    losses = criterion(model(batch), batch)                # batch: student.batch.StudentBatch
    total_loss(losses).backward()
    detections = model.eval().predict(batch)
"""
