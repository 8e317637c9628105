"""The camera student's parts, one module per concept (see `student.models.student`)."""
