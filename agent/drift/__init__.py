"""Container drift: detection (detector.py) and prevention in the kernel (prevention.py)."""
