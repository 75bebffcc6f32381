"""Waiting for something asynchronous (a watch, a kill, a thread) without sleeping blind."""
import time


def wait_until(pred, timeout: float = 5.0, step: float = 0.02) -> bool:
    """True as soon as pred() is, False if it still is not after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def value_within(fn, timeout: float = 60.0, step: float = 0.1):
    """fn()'s first truthy value; AssertionError if none comes within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s")
