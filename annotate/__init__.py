"""Domain core: projects, classes, scenes, annotations, detections; ingest, geo frames and tiles."""
