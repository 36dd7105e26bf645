"""glibc malloc settings: a step that frees and reallocates its tensors reuses the same pages."""
from __future__ import annotations

import subprocess
import sys

import pytest

STEPS = """
import resource, sys, torch
from imagenet_t2i.malloc import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "1" else None

def step():  # activations of a few MiB, freed at the end like a training step's
    for _ in range(50):
        a = torch.ones(1024, 1024); b = a * 2; c = torch.ones(512, 1024) + b[:512]; del a, b, c

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(keep: bool) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", STEPS, "1" if keep else "0"], check=True, capture_output=True,
                         text=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    default_took, default_faults = page_faults(False)
    took, faults = page_faults(True)
    assert (default_took, took) == ("None", "True")
    assert default_faults > 10_000  # glibc's defaults: fresh pages for every step's tensors
    assert faults * 100 < default_faults

