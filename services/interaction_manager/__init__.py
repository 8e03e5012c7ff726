"""interaction-manager: job.submitted -> tasks; results -> progress; job.completed once."""
