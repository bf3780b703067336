"""What machine a figure was measured on: the CPU's model name, as ``lscpu`` prints it.

Latency figures are only meaningful with the CPU beside them (this project's VMs change CPU
model between sessions), so benchmark output and ``bench --json`` record it.
"""

from __future__ import annotations

import platform
import subprocess

__all__ = ["cpu_model"]


def cpu_model() -> str:
    """The CPU's model name from ``lscpu`` (``platform.processor()`` where lscpu is missing)."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()
