"""x3kd teacher_export: the teachers (run once), teacher fitting and scoring, the single-process export and
the `x3kd-cache` commands. Never imports the student or pipelines (DESIGN.md)."""
