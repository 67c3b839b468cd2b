"""Review workflow: decisions on detections, the audit trail of review events, and exports."""
