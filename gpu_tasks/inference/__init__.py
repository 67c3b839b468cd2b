"""Django-free ML code (embedder, search, refiner, YOLO): numpy in, dataclasses out."""
